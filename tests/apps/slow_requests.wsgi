"""An application for --slow-requests.

/                  "fast"
/block?file=PATH   creates PATH, then waits (in wait_for_marker_removal) until PATH is
                   removed, at most 30 s; answers with its mod_wsgi.request_id
"""

import os
import time
from urllib.parse import parse_qs


def wait_for_marker_removal(marker):
    open(marker, "w").close()
    deadline = time.monotonic() + 30
    while os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.01)


def application(environ, start_response):
    query = {name: values[-1] for name, values in parse_qs(environ["QUERY_STRING"]).items()}
    if environ["PATH_INFO"] == "/block":
        wait_for_marker_removal(query["file"])
        body = environ["mod_wsgi.request_id"].encode()
    else:
        body = b"fast"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
