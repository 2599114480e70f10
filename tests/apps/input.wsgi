"""Reads wsgi.input the way PATH_INFO says and reports what it got, as JSON.

Routes (the query string carries the sizes):

    /read                  read() everything at once
    /read-n?n=N            read(N) in a loop until b''
    /readline?size=N       readline(N) in a loop until b'' (readline() without size);
                           with deadline=S, gives up after S seconds and read()s the rest
    /readlines?hint=N      one readlines(N) (readlines() without hint), then read() the rest
    /read1?n=N             read1(N) in a loop until b'' (read1() without n)
    /iter                  for line in wsgi.input
    /fixed                 reads nothing; a fixed body of 1000 bytes, whatever the method

Common query parameters:

    echo=1     also return every piece, base64-encoded (for small bodies only)
    tag=NAME   write "input.wsgi: NAME reading" to wsgi.errors before the first read

Every report says: the total length and sha256 of what was read, the size of every piece
(and for readlines, the lines it returned), what read() and readline() return once the
body is exhausted, the largest piece, CONTENT_LENGTH and HTTP_TRANSFER_ENCODING as the
environ had them, wsgi.input_terminated, the seconds the reading took, and the process
memory (VmHWM and VmRSS, kB).
"""

import base64
import hashlib
import json
import time
from urllib.parse import parse_qs

FIXED_BODY = bytes(index % 251 for index in range(1000))


def memory_kb():
    """VmHWM (peak resident set) and VmRSS of this process, in kB."""
    memory = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                memory[name] = int(value.split()[0])
    return memory


def optional_int(query, name):
    values = query.get(name)
    return int(values[0]) if values else None


def pieces_of(path, stream, query, info):
    """Yields the pieces read from `stream`; for readlines, `info` gets how many lines
    the one readlines() call returned."""
    if path == "/read":
        yield stream.read()
    elif path == "/read-n":
        size = optional_int(query, "n")
        while True:
            piece = stream.read(size)
            if not piece:
                return
            yield piece
    elif path == "/readline":
        size = optional_int(query, "size")
        deadline = optional_int(query, "deadline")
        started = time.monotonic()
        while True:
            if deadline is not None and time.monotonic() - started > deadline:
                # Too slow: give up on readline, drain the rest and say so.
                info["deadline_hit"] = True
                yield stream.read()
                return
            piece = stream.readline() if size is None else stream.readline(size)
            if not piece:
                return
            yield piece
    elif path == "/readlines":
        hint = optional_int(query, "hint")
        lines = stream.readlines() if hint is None else stream.readlines(hint)
        info["readlines_count"] = len(lines)
        yield from lines
        rest = stream.read()
        if rest:
            yield rest
    elif path == "/read1":
        while True:
            piece = stream.read1(optional_int(query, "n"))
            if not piece:
                return
            yield piece
    elif path == "/iter":
        yield from stream
    else:
        raise LookupError(path)


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/fixed":
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("X-Method", environ["REQUEST_METHOD"])],
        )
        return [FIXED_BODY]

    if "tag" in query:
        errors = environ["wsgi.errors"]
        errors.write(f"input.wsgi: {query['tag'][0]} reading\n")
        errors.flush()

    stream = environ["wsgi.input"]
    echo = query.get("echo") == ["1"]
    digest = hashlib.sha256()
    sizes = []
    echoed = []
    info = {"readlines_count": None, "deadline_hit": False}
    started = time.monotonic()
    try:
        for piece in pieces_of(path, stream, query, info):
            if not isinstance(piece, bytes):
                raise TypeError(f"wsgi.input gave {type(piece).__name__}, not bytes")
            digest.update(piece)
            sizes.append(len(piece))
            if echo:
                echoed.append(base64.b64encode(piece).decode("ascii"))
    except LookupError:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such route\n"]
    seconds = time.monotonic() - started
    after_end_read = stream.read()
    after_end_read_n = stream.read(10)
    after_end_readline = stream.readline()

    report = {
        "length": sum(sizes),
        "sha256": digest.hexdigest(),
        "sizes": sizes,
        "max_piece": max(sizes, default=0),
        "seconds": seconds,
        "readlines_count": info["readlines_count"],
        "deadline_hit": info["deadline_hit"],
        "after_end": {
            "read": len(after_end_read),
            "read_n": len(after_end_read_n),
            "readline": len(after_end_readline),
        },
        "content_length": environ.get("CONTENT_LENGTH"),
        "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
        "input_terminated": environ.get("wsgi.input_terminated"),
        "memory_kb": memory_kb(),
    }
    if echo:
        report["pieces"] = echoed
    payload = json.dumps(report).encode("utf-8")
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    )
    return [payload]
