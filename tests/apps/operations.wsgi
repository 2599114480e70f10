"""An application for the operations pages (health, metrics, server status).

Loading it sleeps OPS_TEST_LOAD_SECONDS seconds (0 by default), so a test can see the
server before the application is loaded; then it creates OPS_TEST_LOADED_FILE, if set.

/                    "hello"
/block?file=PATH     creates PATH (the request has begun), then waits until PATH is
                     removed (at most 30 s), then "released"
/status?code=N       answers with status N
"""

import os
import time
from urllib.parse import parse_qs

time.sleep(float(os.environ.get("OPS_TEST_LOAD_SECONDS", "0")))
if os.environ.get("OPS_TEST_LOADED_FILE"):
    open(os.environ["OPS_TEST_LOADED_FILE"], "w").close()


def answer(start_response, status, body):
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = {name: values[-1] for name, values in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/block":
        marker = query["file"]
        open(marker, "w").close()
        deadline = time.monotonic() + 30
        while os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.01)
        return answer(start_response, "200 OK", b"released")
    if path == "/status":
        code = int(query.get("code", "200"))
        return answer(start_response, f"{code} Whatever", b"status")
    return answer(start_response, "200 OK", b"hello")
