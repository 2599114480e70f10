"""flask_json: a small Flask application answering with a JSON document."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/")
def index():
    return jsonify(
        message="Hello, world!",
        server="bench",
        items=[{"id": i, "name": f"item-{i}", "ok": i % 2 == 0} for i in range(10)],
    )


application = app
