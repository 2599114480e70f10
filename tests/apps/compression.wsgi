"""Responses for --compress-responses and --map-head-to-get: text big and small, a body
the application encoded itself, an image, JSON, a stream that waits for the test, and the
method the application saw."""

import gzip
import json
import os
import time
from urllib.parse import parse_qs

BIG = b"".join(b"<p>line %d of a page worth compressing</p>\n" % n for n in range(500))
FIRST = b"first part of the stream, sent before the application waits\n" * 40
SECOND = b"second part, sent once the test lets the application go on\n" * 200


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = parse_qs(environ["QUERY_STRING"])
    method = [("X-Method", environ["REQUEST_METHOD"])]
    if path == "/big":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), *method])
        return [BIG[:10000], BIG[10000:]]
    if path == "/small":
        start_response("200 OK", [("Content-Type", "text/plain"), *method])
        return [b"hello, small world\n"]
    if path == "/json":
        payload = json.dumps({"items": list(range(2000))}).encode()
        start_response("200 OK", [("Content-Type", "application/json"), *method])
        return [payload]
    if path == "/encoded":
        body = gzip.compress(BIG)
        headers = [("Content-Type", "text/html"), ("Content-Encoding", "gzip")]
        start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
        return [body]
    if path == "/image":
        start_response("200 OK", [("Content-Type", "image/png")])
        return [BIG]
    if path == "/etag":
        start_response("200 OK", [("Content-Type", "text/css"), ("ETag", '"v1"')])
        return [BIG]
    if path == "/stream":
        gate = query["gate"][0]

        def parts():
            yield FIRST
            deadline = time.monotonic() + 30
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.01)
            yield SECOND

        start_response("200 OK", [("Content-Type", "text/plain"), *method])
        return parts()
    if path == "/empty-for-head":
        start_response("200 OK", [("Content-Type", "text/plain"), *method])
        if environ["REQUEST_METHOD"] == "HEAD":
            return []
        return [BIG]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such page\n"]
