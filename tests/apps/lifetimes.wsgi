"""An application for tests of what must end when a request ends (tests/test_lifetimes.py).

/sleep?seconds=S&tag=T   writes the marker T.started, sleeps S seconds, writes T.done
/keep-environ            keeps the environ (as Django keeps a request in a reference cycle
                         until the collector runs) and answers without reading the body
/pid                     {"pid": N}

Markers go to the directory named by LIFETIMES_MARKER_DIR.
"""

import json
import os
import time
from pathlib import Path
from urllib.parse import parse_qs

KEPT = []


def marker(name):
    return Path(os.environ["LIFETIMES_MARKER_DIR"]) / name


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
        tag = query.get("tag", "sleep")
        marker(f"{tag}.started").touch()
        time.sleep(float(query.get("seconds", "1")))
        marker(f"{tag}.done").touch()
    elif path == "/keep-environ":
        KEPT.append(environ)
    return reply(start_response)
