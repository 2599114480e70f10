"""Reports what the application saw: the environ, the request body, its pid and thread."""

import base64
import json
import os
import threading


def application(environ, start_response):
    body = environ["wsgi.input"].read()
    seen = {key: value if isinstance(value, str) else repr(value) for key, value in environ.items()}
    report = {
        "environ": seen,
        "body": base64.b64encode(body).decode("ascii"),
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "cwd": os.getcwd(),
    }
    payload = json.dumps(report).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [payload]
