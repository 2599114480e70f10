"""wsgi.input through real sockets: every reading method, chunked bodies, Expect:
100-continue, streaming a large upload, and the GIL released while waiting for body bytes.

The application (apps/input.wsgi) reads the body the way the path says and reports what it
got as JSON; `io.BytesIO` over the same bytes is the oracle for what each method should
return.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import select
import socket
import time

import pytest
import requests

APP = "input.wsgi"


def make_body() -> bytes:
    """Many lines of different lengths (empty ones, short ones, one longer than any read
    buffer) and a last line without a newline."""
    lines = []
    for index in range(400):
        length = (index * 37) % 997
        lines.append(bytes((index + offset) % 94 + 33 for offset in range(length)) + b"\n")
    lines.insert(10, b"\n")
    lines.insert(11, b"\n")
    lines.insert(150, b"L" * 70_000 + b"\n")
    return b"".join(lines) + b"the last line has no newline"


BODY = make_body()
LINES = BODY.splitlines(keepends=True)


def uneven_chunks(data: bytes):
    """Yields `data` in chunks of varied sizes, so chunk edges fall inside and between
    lines; `requests` sends a generator body with Transfer-Encoding: chunked."""
    sizes = [1, 7, 4096, 3, 100_000, 65_536, 13, 250_000]
    position = 0
    index = 0
    while position < len(data):
        size = sizes[index % len(sizes)]
        yield data[position : position + size]
        position += size
        index += 1


def post(server, path: str, framing: str, body: bytes = BODY) -> dict:
    data = body if framing == "length" else uneven_chunks(body)
    response = server.post(path, data=data)
    assert response.status_code == 200, response.text
    return response.json()


def pieces(report: dict) -> list[bytes]:
    return [base64.b64decode(piece) for piece in report["pieces"]]


def assert_complete(report: dict, body: bytes = BODY) -> None:
    """The pieces add up to exactly `body`, and the stream is exhausted afterwards."""
    assert report["length"] == len(body)
    assert report["sha256"] == hashlib.sha256(body).hexdigest()
    if "pieces" in report:
        assert b"".join(pieces(report)) == body
    assert report["after_end"] == {"read": 0, "read_n": 0, "readline": 0}
    assert report["input_terminated"] is True


@pytest.fixture
def server(ferrule_server, mode_options):
    return ferrule_server(APP, *mode_options)


FRAMINGS = pytest.mark.parametrize("framing", ["length", "chunked"])


# -- the reading methods -----------------------------------------------------------------


@FRAMINGS
def test_read_returns_the_whole_body(server, framing):
    report = post(server, "/read", framing)
    assert_complete(report)
    assert report["sizes"] == [len(BODY)]


@FRAMINGS
@pytest.mark.parametrize("size", [1, 10, 4096, 65_536, 10_000_000])
def test_read_n_never_returns_more_than_n(server, framing, size):
    report = post(server, f"/read-n?n={size}", framing)
    assert_complete(report)
    assert report["max_piece"] <= size
    # A bounded stream gives short reads only at its end.
    expected_sizes = [size] * (len(BODY) // size)
    if len(BODY) % size:
        expected_sizes.append(len(BODY) % size)
    assert report["sizes"] == expected_sizes


@FRAMINGS
def test_readline_returns_line_by_line(server, framing):
    report = post(server, "/readline?echo=1", framing)
    assert_complete(report)
    assert pieces(report) == LINES
    assert pieces(report)[-1] == b"the last line has no newline"


def bytesio_readlines_by_size(size: int) -> list[bytes]:
    oracle = io.BytesIO(BODY)
    return list(iter(lambda: oracle.readline(size), b""))


@FRAMINGS
@pytest.mark.parametrize("size", [1, 5, 100, 4096, 200_000])
def test_readline_honours_size(server, framing, size):
    report = post(server, f"/readline?size={size}&echo=1", framing)
    assert_complete(report)
    got = pieces(report)
    assert max(len(piece) for piece in got) <= size
    assert got == bytesio_readlines_by_size(size)


@FRAMINGS
@pytest.mark.parametrize("hint", [1, 500, 100_000, 300_000, 10_000_000])
def test_readlines_stops_after_hint_bytes(server, framing, hint):
    report = post(server, f"/readlines?hint={hint}&echo=1", framing)
    assert_complete(report)
    got = pieces(report)
    count = report["readlines_count"]
    lines, rest = got[:count], got[count:]
    assert lines == io.BytesIO(BODY).readlines(hint)
    assert lines == LINES[:count]
    # Lines are added until their total reaches the hint, and not one more.
    assert sum(len(line) for line in lines[:-1]) < hint
    if count < len(LINES):
        assert sum(len(line) for line in lines) >= hint
    assert b"".join(rest) == b"".join(LINES[count:])


@FRAMINGS
def test_readlines_without_hint_returns_every_line(server, framing):
    report = post(server, "/readlines?echo=1", framing)
    assert_complete(report)
    assert report["readlines_count"] == len(LINES)
    assert pieces(report) == LINES


@FRAMINGS
def test_iteration_yields_every_line(server, framing):
    report = post(server, "/iter?echo=1", framing)
    assert_complete(report)
    assert pieces(report) == LINES


@pytest.mark.parametrize("path", ["/read", "/read-n?n=10", "/readline", "/readlines", "/iter"])
def test_no_body_reads_as_empty(server, path):
    response = server.get(path)
    assert response.status_code == 200
    report = response.json()
    assert_complete(report, b"")
    assert not any(report["sizes"])
    assert report["content_length"] is None


def test_body_with_content_length_reports_it(server):
    report = post(server, "/read", "length")
    assert report["content_length"] == str(len(BODY))
    assert report["transfer_encoding"] is None


def test_readline_with_a_small_size_takes_time_linear_in_the_line(server):
    # A correct readline(size) looks at no more than `size` bytes; one that scans the
    # whole buffered rest of the line on every call is quadratic: 200 000 readline(1)
    # calls over a 200 kB line take tens of seconds instead of a fraction of one. The
    # application gives up after 10 s (and drains the rest) so a slow server fails fast.
    body = b"x" * 200_000 + b"\n"
    report = post(server, "/readline?size=1&deadline=10", "length", body=body)
    assert_complete(report, body)
    assert not report["deadline_hit"], "readline(1) over a 200 kB line took over 10 s"
    assert report["sizes"] == [1] * len(body)
    assert report["seconds"] < 3, f"200 001 readline(1) calls took {report['seconds']:.1f} s"


# -- chunked request bodies --------------------------------------------------------------


def test_chunked_body_arrives_dechunked_and_complete(server):
    report = post(server, "/read?echo=1", "chunked")
    assert_complete(report)
    assert pieces(report) == [BODY]
    assert report["transfer_encoding"] == "chunked"  # proof the client did send it chunked
    assert report["content_length"] is None
    assert report["input_terminated"] is True


def test_empty_chunked_body(server):
    report = post(server, "/read", "chunked", body=b"")
    assert_complete(report, b"")
    assert report["content_length"] is None


# -- raw sockets -------------------------------------------------------------------------


def read_until_closed(sock: socket.socket) -> bytes:
    received = bytearray()
    while True:
        try:
            block = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(
                f"the server kept the connection open; received so far: {bytes(received)!r}"
            ) from None
        if not block:
            return bytes(received)
        received += block


def split_response(data: bytes) -> tuple[str, dict[str, str], bytes]:
    head, separator, body = data.partition(b"\r\n\r\n")
    assert separator, f"no complete response head in {data!r}"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status_line, headers, body


def post_head(port: int, path: str, content_length: int, *extra: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Content-Length: {content_length}",
        "Content-Type: application/octet-stream",
        "Connection: close",
        *extra,
    ]
    return ("\r\n".join([*lines, "", ""])).encode("ascii")


def test_expect_100_continue(server):
    body = BODY[:5000]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post_head(server.port, "/read", len(body), "Expect: 100-continue"))
        interim = b""
        while b"\r\n\r\n" not in interim:
            block = sock.recv(4096)
            assert block, f"connection closed before 100 Continue: {interim!r}"
            interim += block
        head, _, after = interim.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 100 Continue"), head
        assert after == b"", "nothing may follow 100 Continue before the body is sent"
        sock.sendall(body)
        status_line, headers, payload = split_response(read_until_closed(sock))
    assert status_line == "HTTP/1.1 200 OK"
    assert int(headers["content-length"]) == len(payload)
    report = json.loads(payload)
    assert_complete(report, body)
    assert report["content_length"] == str(len(body))


# -- a large upload is streamed ----------------------------------------------------------

STREAM_SIZE = 256 * 1024 * 1024
STREAM_BLOCK = 1024 * 1024
PEAK_RSS_LIMIT_KB = 150_000


def test_large_chunked_upload_is_streamed_not_buffered(ferrule_server, mode_options):
    # Past mod_wsgi-express's default --limit-request-body (10 MiB): lifted.
    server = ferrule_server(APP, *mode_options, "--limit-request-body", "0")
    baseline = server.get("/read").json()["memory_kb"]
    base = os.urandom(STREAM_BLOCK)
    expected = hashlib.sha256()

    def blocks():
        for index in range(STREAM_SIZE // STREAM_BLOCK):
            shift = (index * 4099) % STREAM_BLOCK
            block = base[shift:] + base[:shift]
            expected.update(block)
            yield block

    response = server.post("/read-n?n=65536", data=blocks(), timeout=110)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["length"] == STREAM_SIZE
    assert report["sha256"] == expected.hexdigest()
    assert report["max_piece"] == 65_536
    assert len(report["sizes"]) == STREAM_SIZE // 65_536
    assert report["content_length"] is None
    peak = report["memory_kb"]["VmHWM"]
    assert peak < PEAK_RSS_LIMIT_KB, (
        f"server peak RSS {peak} kB (before the upload: {baseline['VmHWM']} kB): "
        "the body was buffered instead of streamed"
    )


# -- the GIL is released while waiting for body bytes ------------------------------------


def test_waiting_for_body_bytes_does_not_block_other_requests(ferrule_server, mode_options):
    # Nothing read ahead, so that the application thread itself waits for the body bytes
    # (a body larger than --request-buffer-size does the same).
    server = ferrule_server(APP, *mode_options, "--threads", "2", "--request-buffer-size", "0")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(post_head(server.port, "/read?tag=slow-upload", 10) + b"12345")
        server.wait_for_log("input.wsgi: slow-upload reading")
        for _ in range(3):
            started = time.monotonic()
            try:
                response = server.get("/fixed", timeout=5)
            except requests.Timeout:
                pytest.fail("a request waiting for body bytes blocked the whole server")
            assert response.status_code == 200
            assert len(response.content) == 1000
            assert time.monotonic() - started < 5
        readable, _, _ = select.select([slow], [], [], 0)
        assert not readable, "the first request was answered before its body was complete"
        slow.sendall(b"67890")
        status_line, _, payload = split_response(read_until_closed(slow))
    assert status_line == "HTTP/1.1 200 OK"
    report = json.loads(payload)
    assert_complete(report, b"1234567890")
    assert report["sizes"] == [10]
