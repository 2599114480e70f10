"""An application that reads the `mod_wsgi` module the server puts into sys.modules.

At import it subscribes to the events (unless MOD_WSGI_TEST_NO_SUBSCRIBER is set) and to
the shutdown; `process_stopping` appends a JSON line to $MOD_WSGI_TEST_STOP_FILE.

/facts        the module's attributes and where it came from, as JSON
/metrics      process_metrics() and server_metrics(), as JSON
/data         request_data(): what the request_started subscriber left there
/events       the events this process saw so far (name and sorted keys; some values)
/fail         raises, after putting something in request_data()
/replaced     answered by the application a subscriber put in place of this one
/block?file=P creates P, then waits until it is removed (at most 30 s)
/stream?chunks=N&size=S  reads the body 8 KiB at a time (the count of reads goes into
              request_data()), then yields N chunks of S bytes
/write        sends its body through write(), in two calls
/second-start calls start_response again with exc_info, before any body byte
/active       the paths of the requests in mod_wsgi.active_requests, as JSON
"""

import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs

import mod_wsgi

seen = []
seen_lock = threading.Lock()

try:
    mod_wsgi.request_data()
    outside_request = "no error"
except RuntimeError as error:
    outside_request = str(error)


def replacement(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"replaced by a subscriber"]


COUNTERS = (
    "input_reads",
    "input_length",
    "input_time",
    "output_writes",
    "output_length",
    "output_time",
)


def subscriber(name, **event):
    record = {"name": name, "keys": sorted(event)}
    for key in (
        *("status", "thread_id", "request_id", "shutdown_reason"),
        *("request_start", "queue_start", "daemon_start", "application_start"),
    ):
        if key in event:
            record[key] = event[key]
    if name == "request_exception":
        record["exception"] = repr(event["exception_info"][1])
        record["data"] = dict(event["request_data"])
    if name == "request_finished":
        record["application_time"] = event["application_time"]
        record["data"] = dict(event["request_data"])
        for key in COUNTERS:
            record[key] = event[key]
    if name == "response_started":
        record["response_status"] = event["response_status"]
        record["response_headers"] = [list(header) for header in event["response_headers"]]
        record["exception_info"] = repr(event["exception_info"])
    with seen_lock:
        seen.append(record)
    if name == "request_started":
        event["request_data"]["from_subscriber"] = event["request_environ"]["PATH_INFO"]
        if event["request_environ"]["PATH_INFO"] == "/replaced":
            return {"application_object": replacement}
    return None


if not os.environ.get("MOD_WSGI_TEST_NO_SUBSCRIBER"):
    mod_wsgi.subscribe_events(subscriber)


@mod_wsgi.subscribe_shutdown
def stopping(name, **event):
    path = os.environ.get("MOD_WSGI_TEST_STOP_FILE")
    if path:
        with open(path, "a") as stop_file:
            line = {"pid": os.getpid(), "name": name, **event}
            stop_file.write(json.dumps(line) + "\n")


def answer(start_response, value):
    body = json.dumps(value).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = {name: values[-1] for name, values in parse_qs(environ["QUERY_STRING"]).items()}
    if path == "/facts":
        return answer(
            start_response,
            {
                "version": list(mod_wsgi.version),
                "process_group": mod_wsgi.process_group,
                "application_group": mod_wsgi.application_group,
                "maximum_processes": mod_wsgi.maximum_processes,
                "threads_per_process": mod_wsgi.threads_per_process,
                "environ_version": list(environ["mod_wsgi.version"]),
                "environ_process_group": environ["mod_wsgi.process_group"],
                "file": getattr(mod_wsgi, "__file__", None),
                "request_data_outside_a_request": outside_request,
                "server_metrics": mod_wsgi.server_metrics(),
                "pid": os.getpid(),
            },
        )
    if path == "/metrics":
        return answer(
            start_response,
            {"process": mod_wsgi.process_metrics(), "server": mod_wsgi.server_metrics()},
        )
    if path == "/data":
        data = mod_wsgi.request_data()
        data["from_application"] = True
        return answer(start_response, dict(data))
    if path == "/events":
        # Copied under the lock, answered outside it: start_response publishes
        # response_started to the subscriber, which takes the lock.
        with seen_lock:
            so_far = list(seen)
        return answer(start_response, so_far)
    if path == "/fail":
        mod_wsgi.request_data()["before_failing"] = 1
        raise ValueError("failing on purpose")
    if path == "/block":
        marker = query["file"]
        open(marker, "w").close()
        deadline = time.monotonic() + 30
        while os.path.exists(marker) and time.monotonic() < deadline:
            time.sleep(0.01)
        return answer(start_response, "released")
    if path == "/stream":
        reads = 0
        while True:
            reads += 1
            if not environ["wsgi.input"].read(8192):
                break
        mod_wsgi.request_data()["reads"] = reads
        size = int(query["size"])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"y" * size for _ in range(int(query["chunks"])))
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first ")
        write(b"second")
        return []
    if path == "/second-start":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise KeyError("changed its mind")
        except KeyError:
            start_response(
                "503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info()
            )
        return [b"unavailable"]
    if path == "/active":
        return answer(
            start_response,
            sorted(
                event["request_environ"]["PATH_INFO"] for event in mod_wsgi.active_requests.values()
            ),
        )
    return answer(start_response, "hello")
