"""sleep10ms: sleeps 10 ms (an I/O wait stand-in), then answers like hello."""

import time

BODY = b"Hello, world!"


def application(environ, start_response):
    time.sleep(0.010)
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))],
    )
    return [BODY]
