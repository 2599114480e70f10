"""Responses of every shape, chosen by PATH_INFO, for tests/test_response.py.

Query string parameters: `tag` names a close() marker, `path`/`offset` pick a file, `size`
and `blksize` size a generated body. close() calls are recorded as marker files in the
directory named by the RESPONSES_MARKER_DIR environment variable.

Warnings are errors in this module so that wsgiref.validate complaints fail the request.
"""

import io
import json
import os
import sys
import threading
import time
import warnings
from urllib.parse import parse_qs
from wsgiref.validate import validator

warnings.simplefilter("error")

TEXT = [("Content-Type", "text/plain")]

# Files handed to wsgi.file_wrapper, by tag, so that a later request can tell whether the
# server closed them.
OPENED = {}


def query(environ):
    return {key: values[-1] for key, values in parse_qs(environ["QUERY_STRING"]).items()}


def mark(tag, what="closed"):
    """Appends a line to the marker file of `tag`: one line per close() call."""
    directory = os.environ["RESPONSES_MARKER_DIR"]
    with open(os.path.join(directory, tag), "a") as marker:
        marker.write(what + "\n")


def pattern(size):
    return bytes(index % 251 for index in range(size))


class Closing:
    """Wraps an iterable and records each call of close()."""

    def __init__(self, iterable, tag):
        self.iterable = iterable
        self.tag = tag

    def __iter__(self):
        return iter(self.iterable)

    def close(self):
        if hasattr(self.iterable, "close"):
            self.iterable.close()
        mark(self.tag)


class ClosingList(list):
    """A list result with a close() method."""

    tag = None

    def close(self):
        mark(self.tag)


def chunks(*parts):
    yield from parts


# -- plain results ---------------------------------------------------------------------


def list_result(environ, start_response):
    start_response("200 OK", TEXT)
    return [b"hello ", b"world"]


def tuple_result(environ, start_response):
    start_response("200 OK", TEXT)
    return (b"tuple ", b"body")


def declared_length(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "5")])
    return [b"hel", b"lo"]


def generator_result(environ, start_response):
    start_response("200 OK", TEXT)
    return chunks(b"one,", b"two,", b"three")


def late_start(environ, start_response):
    def body():
        start_response("201 Created", [*TEXT, ("X-Late", "yes")])
        yield b"created late"

    return body()


def retry_after_empty(environ, start_response):
    def body():
        start_response("200 OK", TEXT)
        yield b""
        try:
            raise ValueError("something went wrong before any byte")
        except ValueError:
            start_response("503 Service Unavailable", [*TEXT, ("X-Retried", "yes")], sys.exc_info())
        yield b"sorry"

    return body()


def exc_info_after_headers(environ, start_response):
    def body():
        start_response("200 OK", TEXT)
        yield b"first chunk"
        try:
            raise RuntimeError("late failure marker")
        except RuntimeError:
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
        yield b"never sent"

    return body()


def start_twice(environ, start_response):
    start_response("200 OK", TEXT)
    start_response("202 Accepted", TEXT)
    return [b"twice"]


def write_callable(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"written-")
    write(b"by-write-")
    return [b"then-", b"iterable"]


def write_before_start(environ, start_response):
    # The write() callable is only handed out by start_response(); Ferrule exposes it as
    # an attribute of start_response too, which is the only way to call it too early.
    start_response.write(b"too early")
    start_response("200 OK", TEXT)
    return [b"unreachable"]


# -- validation of start_response arguments and body items -----------------------------


def bad_status_bytes(environ, start_response):
    start_response(b"200 OK", TEXT)
    return [b"x"]


def bad_status_no_code(environ, start_response):
    start_response("OK", TEXT)
    return [b"x"]


def bad_headers_tuple(environ, start_response):
    start_response("200 OK", (("Content-Type", "text/plain"),))
    return [b"x"]


def bad_header_crlf(environ, start_response):
    start_response("200 OK", [*TEXT, ("X-Bad", "a\r\nX-Injected: yes")])
    return [b"x"]


def bad_header_not_latin1(environ, start_response):
    start_response("200 OK", [*TEXT, ("X-Price", "10 \u20ac")])
    return [b"x"]


def bad_header_connection(environ, start_response):
    start_response("200 OK", [*TEXT, ("Connection", "close")])
    return [b"x"]


def bad_header_transfer_encoding(environ, start_response):
    start_response("200 OK", [*TEXT, ("Transfer-Encoding", "chunked")])
    return [b"x"]


def custom_reason(environ, start_response):
    start_response("299 Fine Indeed", TEXT)
    return [b"fine"]


def body_str(environ, start_response):
    start_response("200 OK", TEXT)
    return ["not bytes"]


# -- exceptions ------------------------------------------------------------------------


def raise_early(environ, start_response):
    raise ValueError("early failure marker")


def raise_mid_stream(environ, start_response):
    def body():
        start_response("200 OK", TEXT)
        yield b"a first chunk that goes out"
        raise RuntimeError("mid-stream failure marker")

    return body()


def raise_after_declared_body(environ, start_response):
    def body():
        start_response("200 OK", [*TEXT, ("Content-Length", "13")])
        yield b"whole body 13"
        raise RuntimeError("after-the-body failure marker")

    return body()


def response_object(environ, start_response):
    """What Flask and Django return: an iterable object (not a list) over the whole body,
    with its Content-Length declared."""
    start_response("200 OK", [*TEXT, ("Content-Length", "11")])
    return iter([b"from object"])


# -- close() ---------------------------------------------------------------------------


def close_list(environ, start_response):
    start_response("200 OK", TEXT)
    result = ClosingList([b"listed"])
    result.tag = query(environ)["tag"]
    return result


def close_generator(environ, start_response):
    start_response("200 OK", TEXT)
    return Closing(chunks(b"gene", b"rated"), query(environ)["tag"])


def close_raise(environ, start_response):
    def body():
        start_response("200 OK", TEXT)
        raise RuntimeError("failure during iteration")
        yield b"never"

    return Closing(body(), query(environ)["tag"])


def close_forever(environ, start_response):
    tag = query(environ)["tag"]

    def body():
        block = b"x" * (1024 * 1024)
        try:
            while True:
                yield block
        except GeneratorExit:
            mark(tag + ".generator-exit")
            raise

    start_response("200 OK", TEXT)
    return Closing(body(), tag)


def paced_stream(environ, start_response):
    """`chunks` blocks of 1 MiB. Before each one, compares what was produced with what
    the client says it received (it writes the count to the marker file `tag.received`)
    and records the largest lead in `tag.lead` at the end."""
    params = query(environ)
    tag = params["tag"]
    received_path = os.path.join(os.environ["RESPONSES_MARKER_DIR"], tag + ".received")
    block = b"y" * (1024 * 1024)

    def client_received():
        try:
            with open(received_path) as received:
                return int(received.read() or 0)
        except FileNotFoundError:
            return 0

    def body():
        lead = 0
        try:
            for index in range(int(params["chunks"])):
                lead = max(lead, index * len(block) - client_received())
                yield block
        finally:
            mark(tag + ".lead", str(lead))

    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return body()


# -- wsgi.file_wrapper -----------------------------------------------------------------


def file_result(environ, start_response):
    params = query(environ)
    handle = open(params["path"], "rb")  # noqa: SIM115 - the server closes it
    handle.seek(int(params.get("offset", "0")))
    OPENED[params["tag"]] = handle
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](handle)


def bytesio_result(environ, start_response):
    params = query(environ)
    handle = io.BytesIO(pattern(int(params["size"])))
    OPENED[params["tag"]] = handle
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](handle, int(params["blksize"]))


def file_closed(environ, start_response):
    handle = OPENED.get(query(environ)["tag"])
    state = "missing" if handle is None else ("closed" if handle.closed else "open")
    start_response("200 OK", TEXT)
    return [state.encode()]


# -- logging and threads ---------------------------------------------------------------


def logging_streams(environ, start_response):
    print("print() marker from the application")
    sys.stderr.write("sys.stderr marker from the application\n")
    environ["wsgi.errors"].write("wsgi.errors marker from the application\n")
    environ["wsgi.errors"].flush()
    start_response("200 OK", TEXT)
    return [b"logged"]


def sleep_one_second(environ, start_response):
    started = time.time()
    time.sleep(1.0)
    ended = time.time()
    report = {"start": started, "end": ended, "thread": threading.get_ident()}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(report).encode()]


# -- under wsgiref.validate ------------------------------------------------------------


def echo_post(environ, start_response):
    stream = environ["wsgi.input"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    first_line = stream.readline()
    rest = stream.read(length - len(first_line))
    start_response("200 OK", TEXT)
    return [b"line=" + first_line, b"rest=" + rest]


def no_content_type(environ, start_response):
    # Fine for the server, wrong for wsgiref.validate: a control that it is active.
    start_response("200 OK", [])
    return [b"untyped"]


VALIDATED = {
    "/list": list_result,
    "/no-content-type": no_content_type,
    "/generator": generator_result,
    "/post": echo_post,
    "/file": file_result,
}


def validated_inner(environ, start_response):
    return VALIDATED[environ["PATH_INFO"]](environ, start_response)


validated = validator(validated_inner)


def run_validated(environ, start_response):
    environ["SCRIPT_NAME"] += "/validated"
    environ["PATH_INFO"] = environ["PATH_INFO"][len("/validated") :]
    return validated(environ, start_response)


ROUTES = {
    "/list": list_result,
    "/tuple": tuple_result,
    "/declared-length": declared_length,
    "/generator": generator_result,
    "/late-start": late_start,
    "/retry-after-empty": retry_after_empty,
    "/exc-info-after-headers": exc_info_after_headers,
    "/start-twice": start_twice,
    "/write": write_callable,
    "/write-before-start": write_before_start,
    "/bad/status-bytes": bad_status_bytes,
    "/bad/status-no-code": bad_status_no_code,
    "/bad/headers-tuple": bad_headers_tuple,
    "/bad/header-crlf": bad_header_crlf,
    "/bad/header-not-latin1": bad_header_not_latin1,
    "/bad/header-connection": bad_header_connection,
    "/bad/header-transfer-encoding": bad_header_transfer_encoding,
    "/custom-reason": custom_reason,
    "/body-str": body_str,
    "/raise-early": raise_early,
    "/raise-mid-stream": raise_mid_stream,
    "/raise-after-declared-body": raise_after_declared_body,
    "/response-object": response_object,
    "/close/list": close_list,
    "/close/generator": close_generator,
    "/close/raise": close_raise,
    "/close/forever": close_forever,
    "/paced-stream": paced_stream,
    "/file": file_result,
    "/bytesio": bytesio_result,
    "/file-closed": file_closed,
    "/logging": logging_streams,
    "/sleep": sleep_one_second,
}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/validated/"):
        return run_validated(environ, start_response)
    route = ROUTES.get(path)
    if route is None:
        start_response("404 Not Found", TEXT)
        return [b"no route " + path.encode()]
    return route(environ, start_response)
