"""A small Flask application, served as a module (`app:app`) and as a script."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/items/<int:item_id>")
def item(item_id):
    return jsonify(id=item_id, query=request.args.get("q"))


@app.post("/echo")
def echo():
    return jsonify(received=request.get_json())
