"""What a subprocess of the application inherits, seen when the application is imported
and when it answers a request: {"at_import": REPORT, "at_request": REPORT, "pid": N}.
/file?path=P answers the file P through wsgi.file_wrapper instead.

REPORT is {"environ": the FERRULE_* names in os.environ, "descriptors": the descriptors
above 2 that a `subprocess` child (started with close_fds=False, so that it inherits
whatever is not close-on-exec) finds open, each with what it points to}.
"""

import json
import os
import subprocess
import sys

# The child lists its descriptors; the one listdir itself used is closed by the time it
# is read back, so it drops out.
LIST_DESCRIPTORS = """
import json, os
found = {}
for name in os.listdir("/proc/self/fd"):
    if int(name) > 2:
        try:
            found[name] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass
print(json.dumps(found))
"""


def report():
    child = subprocess.run(
        [sys.executable, "-I", "-c", LIST_DESCRIPTORS],
        capture_output=True,
        text=True,
        check=True,
        close_fds=False,
    )
    return {
        "environ": sorted(name for name in os.environ if name.startswith("FERRULE_")),
        "descriptors": json.loads(child.stdout),
    }


AT_IMPORT = report()


def application(environ, start_response):
    if environ["PATH_INFO"] == "/file":
        path = environ["QUERY_STRING"].removeprefix("path=")
        start_response("200 OK", [("Content-Length", str(os.path.getsize(path)))])
        return environ["wsgi.file_wrapper"](open(path, "rb"))
    body = json.dumps({"at_import": AT_IMPORT, "at_request": report(), "pid": os.getpid()}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
