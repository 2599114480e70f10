"""hello: a 13-byte body returned as a one-item list."""

BODY = b"Hello, world!"


def application(environ, start_response):
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]
