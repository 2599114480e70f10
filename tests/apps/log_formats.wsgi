"""For the log tests: `/size/N` answers N bytes with an `X-Out` header, `/fail` raises (its
traceback goes to the error log), `/print/N` prints a long numbered line, anything else
says hello."""

import os


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/fail":
        raise RuntimeError("failed on purpose for the error log")
    if path.startswith("/print/"):
        number = path.rsplit("/", 1)[1]
        print(f"printed {number} pid {os.getpid()} {'p' * 3000}", flush=True)
    if path.startswith("/size/"):
        body = b"x" * int(path.rsplit("/", 1)[1])
    else:
        body = b"hello\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Out", "out-value")])
    return [body]
