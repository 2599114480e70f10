"""stream: 64 chunks of 1 KiB yielded by a generator, no Content-Length."""

CHUNK = b"x" * 1024
COUNT = 64


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    for _ in range(COUNT):
        yield CHUNK
