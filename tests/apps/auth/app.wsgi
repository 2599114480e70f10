"""Says who it served (in the error log, so a test can tell it never ran) and what it saw."""

import json
import os
import sys


def application(environ, start_response):
    print(f"application ran for {environ.get('REMOTE_USER')}", file=sys.stderr)
    seen = {key: value for key, value in environ.items() if isinstance(value, str)}
    start_response("200 OK", [("Content-Type", "application/json"), ("X-Pid", str(os.getpid()))])
    return [json.dumps(seen).encode("utf-8")]
