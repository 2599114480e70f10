"""Workloads for tests/test_http2.py, chosen by PATH_INFO."""

import hashlib
import json
import os
import threading
import time

MEGABYTE = bytes(range(256)) * 4096  # 1 MiB


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, HTTP/2!\n"]
    if path == "/large":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [MEGABYTE]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (f"chunk {index}\n".encode() for index in range(100))
    if path == "/file":
        name = environ["QUERY_STRING"]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(name, "rb"))
    if path == "/upload":
        digest = hashlib.sha256()
        size = 0
        while chunk := environ["wsgi.input"].read(65536):
            digest.update(chunk)
            size += len(chunk)
        body = json.dumps({"sha256": digest.hexdigest(), "size": size}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/environ":
        seen = {key: value for key, value in environ.items() if isinstance(value, str)}
        seen["pid"] = os.getpid()
        seen["thread"] = threading.get_ident()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(seen).encode()]
    if path == "/slow":
        if marker := environ.get("HTTP_X_MARKER"):
            open(marker, "w").close()
        time.sleep(float(environ["QUERY_STRING"] or "1"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slept\n"]
    if path == "/error":
        raise RuntimeError("the application failed on purpose")
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such workload\n"]
