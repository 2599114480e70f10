"""An application for daemon-process tests: it reports its pid, sleeps, dies on request.

/pid                      {"pid": N}
/sleep?seconds=S          sleeps S seconds, then {"pid": N}; with &started=PATH it first
                          creates the file PATH, to say the request has begun
/loop?seconds=S           Python that runs S seconds in small sleeps (an exception raised in
                          its thread lands within one), then {"pid": N}; what unwinds it is
                          printed to the error log
/signal?name=SIGSEGV      the process kills itself with that signal mid-request
/exit                     the process leaves with os._exit(1) mid-request
/echo-length              reads wsgi.input, answers {"pid": N, "length": bytes read}
/ignore-body              answers without reading the request body
/hold-gil?seconds=S       calls C's sleep(S) without releasing the GIL (a stuck C extension)
"""

import json
import os
import signal
import sys
import time
from urllib.parse import parse_qs

HOARD = []


def reply(start_response, **fields):
    body = json.dumps({"pid": os.getpid(), **fields}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = {name: values[-1] for name, values in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/sleep":
        if "started" in query:
            open(query["started"], "w").close()
        time.sleep(float(query.get("seconds", "1")))
    elif path == "/loop":
        deadline = time.monotonic() + float(query.get("seconds", "1"))
        try:
            while time.monotonic() < deadline:
                time.sleep(0.05)
        except BaseException as error:
            import mod_wsgi

            print(
                f"/loop unwound by {type(error).__module__}.{type(error).__name__}"
                f" (mod_wsgi.RequestTimeout: {isinstance(error, mod_wsgi.RequestTimeout)})",
                file=sys.stderr,
            )
            raise
    elif path == "/signal":
        os.kill(os.getpid(), getattr(signal, query.get("name", "SIGSEGV")))
        time.sleep(5)
    elif path == "/burn":
        until = time.process_time() + float(query.get("seconds", "1"))
        while time.process_time() < until:
            pass
    elif path == "/hog":
        HOARD.append(bytearray(int(query.get("mb", "100")) * 1024 * 1024))
        for block in HOARD:
            block[::4096] = b"x" * len(block[::4096])  # touch every page: make it resident
    elif path == "/hold-gil":
        import ctypes

        # PyDLL calls keep the GIL: no other thread of this process runs Python meanwhile.
        ctypes.PyDLL(None).sleep(int(query.get("seconds", "30")))
    elif path == "/exit":
        os._exit(1)
    elif path == "/echo-length":
        length = 0
        while True:
            block = environ["wsgi.input"].read(65536)
            if not block:
                break
            length += len(block)
        return reply(start_response, length=length)
    return reply(start_response)
