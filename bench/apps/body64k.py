"""body64k: a 64 KiB body returned as a one-item list."""

BODY = b"x" * 65536


def application(environ, start_response):
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]
