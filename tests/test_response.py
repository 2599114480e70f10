"""The response side of WSGI: start_response, write(), result iterables, file_wrapper,
close(), errors and the streams the application writes to, through real sockets.

`requests` is used where only status, headers and body matter; where the framing on the
wire matters (chunked or close-delimited, a cut connection, the status line as sent, HEAD)
the request is written by hand on a plain socket and the raw bytes are inspected.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import decode_chunked, wait_until

APP = "responses.wsgi"


def pattern(size: int) -> bytes:
    """The same bytes responses.wsgi generates."""
    return bytes(index % 251 for index in range(size))


@pytest.fixture
def markers(tmp_path) -> Path:
    """Where the application records close() calls."""
    directory = tmp_path / "markers"
    directory.mkdir()
    return directory


@pytest.fixture
def start(ferrule_server, markers, mode_options):
    """Starts responses.wsgi in embedded mode with the marker directory set."""

    def start_app(*options: str):
        return ferrule_server(
            APP, *mode_options, *options, env={"RESPONSES_MARKER_DIR": str(markers)}
        )

    return start_app


@pytest.fixture
def server(start):
    return start()


def marker_lines(markers: Path, tag: str) -> list[str]:
    """Waits for the close() marker of `tag` (a whole line of it: the application may be
    writing it while the response is already out) and returns its lines."""
    marker = markers / tag
    wait_until(lambda: marker.exists() and marker.read_text().endswith("\n"))
    return marker.read_text().splitlines()


# -- raw HTTP ----------------------------------------------------------------------------


@dataclass
class RawResponse:
    status_line: str
    headers: list[tuple[str, str]]
    body: bytes
    """Everything after the head, exactly as it came off the wire."""

    @property
    def status(self) -> int:
        return int(self.status_line.split(" ", 2)[1])

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


def request_bytes(
    port: int, path: str, method: str = "GET", version: str = "HTTP/1.1", close: bool = True
) -> bytes:
    lines = [f"{method} {path} {version}", f"Host: 127.0.0.1:{port}"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join([*lines, "", ""])).encode("ascii")


def read_until_closed(sock: socket.socket, data: bytes = b"") -> bytes:
    """Reads until the server closes the connection; fails if it keeps it open."""
    received = bytearray(data)
    while True:
        try:
            block = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(
                f"the server kept the connection open; received so far: {bytes(received)!r}"
            ) from None
        except ConnectionResetError:
            break
        if not block:
            break
        received += block
    return bytes(received)


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Reads up to the end of a response head: (head, whatever came after it)."""
    received = b""
    while b"\r\n\r\n" not in received:
        block = sock.recv(65536)
        assert block, f"connection closed inside the response head: {received!r}"
        received += block
    head, _, rest = received.partition(b"\r\n\r\n")
    return head, rest


def parse(data: bytes) -> RawResponse:
    head, separator, body = data.partition(b"\r\n\r\n")
    assert separator, f"no complete response head in {data!r}"
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return RawResponse(status_line, headers, body)


def raw_exchange(port: int, request: bytes, timeout: float = 10) -> RawResponse:
    """Sends `request` on a new connection and reads until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        return parse(read_until_closed(sock))


# -- list, tuple and generator results ---------------------------------------------------


def test_list_result_gets_content_length_from_the_server(server):
    response = server.get("/list")
    assert response.status_code == 200
    assert response.content == b"hello world"
    assert response.headers["Content-Length"] == "11"
    assert "Transfer-Encoding" not in response.headers
    assert response.headers["Content-Type"] == "text/plain"


def test_tuple_result_gets_content_length_from_the_server(server):
    response = server.get("/tuple")
    assert response.status_code == 200
    assert response.content == b"tuple body"
    assert response.headers["Content-Length"] == "10"
    assert "Transfer-Encoding" not in response.headers


def test_content_length_given_by_the_application_is_kept(server):
    response = raw_exchange(server.port, request_bytes(server.port, "/declared-length"))
    assert response.status == 200
    assert response.header("Content-Length") == ["5"]
    assert response.header("Transfer-Encoding") == []
    assert response.body == b"hello"


def test_generator_result_is_chunked_over_http_1_1(server):
    response = raw_exchange(server.port, request_bytes(server.port, "/generator"))
    assert response.status_line == "HTTP/1.1 200 OK"
    assert response.header("Transfer-Encoding") == ["chunked"]
    assert response.header("Content-Length") == []
    body, complete = decode_chunked(response.body)
    assert body == b"one,two,three"
    assert complete
    assert response.body.endswith(b"0\r\n\r\n")


def test_generator_result_is_close_delimited_over_http_1_0(server):
    # No Connection header at all: an HTTP/1.0 response of unknown length must end by
    # closing the connection, which read_until_closed insists on.
    request = request_bytes(server.port, "/generator", version="HTTP/1.0", close=False)
    response = raw_exchange(server.port, request)
    assert response.status == 200
    assert response.header("Transfer-Encoding") == []
    assert response.header("Content-Length") == []
    assert response.body == b"one,two,three"


def test_start_response_called_late_inside_the_generator_is_used(server):
    response = server.get("/late-start")
    assert response.status_code == 201
    assert response.reason == "Created"
    assert response.headers["X-Late"] == "yes"
    assert response.content == b"created late"


def test_empty_chunks_do_not_commit_the_head(server):
    response = server.get("/retry-after-empty")
    assert response.status_code == 503
    assert response.headers["X-Retried"] == "yes"
    assert response.content == b"sorry"


def test_exc_info_after_the_head_was_sent_reraises_and_cuts_the_connection(server):
    # Keep-alive request: the connection only closes if the server cuts it.
    request = request_bytes(server.port, "/exc-info-after-headers", close=False)
    response = raw_exchange(server.port, request)
    assert response.status == 200
    assert response.header("Transfer-Encoding") == ["chunked"]
    body, complete = decode_chunked(response.body)
    assert not complete, "the truncated body must not end with the terminating chunk"
    assert body in (b"", b"first chunk")
    assert b"never sent" not in response.body
    log = server.wait_for_log("RuntimeError: late failure marker")
    assert "Traceback (most recent call last):" in log


def test_start_response_twice_without_exc_info_is_an_error(server):
    response = server.get("/start-twice")
    assert response.status_code == 500
    server.wait_for_log("start_response() was called a second time without exc_info")


# -- write() -----------------------------------------------------------------------------


def test_write_data_arrives_before_the_iterable(server):
    response = server.get("/write")
    assert response.status_code == 200
    assert response.content == b"written-by-write-then-iterable"


def test_write_before_start_response_is_an_error(server):
    response = server.get("/write-before-start")
    assert response.status_code == 500
    assert b"too early" not in response.content
    server.wait_for_log("write() was called before start_response()")


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "/bad/status-bytes",
            "TypeError: the status passed to start_response() must be a str, got bytes",
        ),
        ("/bad/status-no-code", "ValueError: invalid status 'OK'"),
        (
            "/bad/headers-tuple",
            "TypeError: the headers passed to start_response() must be a list, got tuple",
        ),
        (
            "/bad/header-crlf",
            "the value of response header 'X-Bad' contains a CR, LF or NUL character",
        ),
        (
            "/bad/header-not-latin1",
            "response X-Price '10 \u20ac' has characters outside latin-1",
        ),
        ("/bad/header-connection", "the hop-by-hop header 'Connection' is not allowed"),
        (
            "/bad/header-transfer-encoding",
            "the hop-by-hop header 'Transfer-Encoding' is not allowed",
        ),
    ],
)
def test_invalid_start_response_arguments_give_500_and_say_why(server, path, message):
    response = server.get(path)
    assert response.status_code == 500
    assert "X-Injected" not in response.headers
    assert "X-Price" not in response.headers
    assert response.content != b"x"
    server.wait_for_log(message)


def test_custom_reason_phrase_is_sent_as_is(server):
    response = raw_exchange(server.port, request_bytes(server.port, "/custom-reason"))
    assert response.status_line == "HTTP/1.1 299 Fine Indeed"
    assert response.body == b"fine"


def test_body_item_that_is_not_bytes_gives_500(server):
    response = server.get("/body-str")
    assert response.status_code == 500
    assert b"not bytes" not in response.content
    server.wait_for_log("response body items must be bytes, got a value of type str")


# -- exceptions --------------------------------------------------------------------------


def test_exception_before_any_byte_gives_500_and_a_traceback(server):
    response = server.get("/raise-early")
    assert response.status_code == 500
    assert "error log" in response.text
    log = server.wait_for_log("ValueError: early failure marker")
    assert "Traceback (most recent call last):" in log
    assert "raise_early" in log


def test_exception_mid_stream_cuts_the_connection_and_is_logged(server):
    request = request_bytes(server.port, "/raise-mid-stream", close=False)
    response = raw_exchange(server.port, request)
    assert response.status == 200
    assert response.header("Transfer-Encoding") == ["chunked"]
    body, complete = decode_chunked(response.body)
    assert not complete, "the truncated body must not end with the terminating chunk"
    assert body in (b"", b"a first chunk that goes out")
    log = server.wait_for_log("RuntimeError: mid-stream failure marker")
    assert "Traceback (most recent call last):" in log
    # The server carries on.
    assert server.get("/list").content == b"hello world"


def test_an_iterable_yielding_its_declared_length_at_once_is_sent_whole(server):
    request = request_bytes(server.port, "/response-object")
    response = raw_exchange(server.port, request)
    assert response.status == 200
    assert response.header("Content-Length") == ["11"]
    assert response.header("Transfer-Encoding") == []
    assert response.body == b"from object"


def test_an_error_after_the_whole_declared_body_leaves_the_response_complete(server):
    response = server.get("/raise-after-declared-body")
    assert response.status_code == 200
    assert response.content == b"whole body 13"
    log = server.wait_for_log("RuntimeError: after-the-body failure marker")
    assert "Traceback (most recent call last):" in log
    assert server.get("/list").content == b"hello world"


# -- close() -----------------------------------------------------------------------------


def test_close_is_called_after_a_list_result(server, markers):
    response = server.get("/close/list?tag=list")
    assert response.status_code == 200
    assert response.content == b"listed"
    assert marker_lines(markers, "list") == ["closed"]


def test_close_is_called_after_a_generator_result(server, markers):
    response = server.get("/close/generator?tag=generator")
    assert response.status_code == 200
    assert response.content == b"generated"
    assert marker_lines(markers, "generator") == ["closed"]


def test_close_is_called_when_iteration_raises(server, markers):
    response = server.get("/close/raise?tag=raised")
    assert response.status_code == 500
    assert marker_lines(markers, "raised") == ["closed"]
    server.wait_for_log("RuntimeError: failure during iteration")


def test_close_is_called_when_the_client_disconnects_mid_stream(server, markers):
    # A short timeout: a server that buffers the endless body instead of sending it
    # grows by hundreds of MB per second.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request_bytes(server.port, "/close/forever?tag=gone", close=False))
        received = 0
        while received < 256 * 1024:
            try:
                block = sock.recv(65536)
            except TimeoutError:
                raise AssertionError(
                    f"only {received} bytes of an endless 1 MiB-chunk stream arrived in 5 s: "
                    "the server buffers the body instead of sending it"
                ) from None
            assert block
            received += len(block)
    # The endless generator is stopped and closed once the server notices.
    assert marker_lines(markers, "gone") == ["closed"]
    assert marker_lines(markers, "gone.generator-exit") == ["closed"]
    assert server.get("/list").content == b"hello world"


def test_a_slow_client_holds_back_a_fast_generator(server, markers):
    """Backpressure: the server buffers a bounded amount for a client that reads slowly;
    the application's generator waits instead of piling its output up in memory."""
    chunks = 64
    received_file = markers / "paced.received"
    scratch = markers / "paced.received.tmp"
    with socket.socket() as sock:
        # A small receive buffer, so that the kernel holds little on the client's side.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(request_bytes(server.port, f"/paced-stream?tag=paced&chunks={chunks}"))
        data = bytearray()
        while True:
            block = sock.recv(16 * 1024)
            if not block:
                break
            data += block
            # Atomically, so that the application never reads a half-written count.
            scratch.write_text(str(len(data)))
            scratch.replace(received_file)
    response = parse(bytes(data))
    body, complete = decode_chunked(response.body)
    assert complete
    assert len(body) == chunks * 1024 * 1024
    # What may be in flight: the 8-chunk channel, the chunk in hand, hyper's write buffer
    # and the kernel's socket buffers: well under 24 MiB.
    (lead,) = marker_lines(markers, "paced.lead")
    assert int(lead) <= 24 * 1024 * 1024, f"the application ran {int(lead) >> 20} MiB ahead"


# -- HEAD --------------------------------------------------------------------------------


def test_head_on_a_generator_sends_no_body_and_the_server_keeps_working(server, markers):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            request_bytes(server.port, "/close/generator?tag=head", method="HEAD", close=False)
        )
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        # A second request on the same connection: any body bytes of the HEAD response
        # would show up in front of its status line.
        sock.sendall(request_bytes(server.port, "/list"))
        following = read_until_closed(sock, rest)
    assert following.startswith(b"HTTP/1.1 200 OK\r\n"), following
    assert parse(following).body == b"hello world"
    assert b"gene" not in following
    assert marker_lines(markers, "head") == ["closed"]
    assert server.get("/generator").content == b"one,two,three"


# -- wsgi.file_wrapper -------------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path) -> tuple[Path, bytes]:
    # Not a multiple of any block size, larger than one.
    data = pattern(300_007)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def wait_closed(server, tag: str) -> None:
    wait_until(lambda: server.get(f"/file-closed?tag={tag}").text == "closed")


def test_file_wrapper_sends_a_real_file_with_its_length(server, data_file):
    path, data = data_file
    response = server.get("/file", params={"path": str(path), "tag": "whole"})
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(data))
    assert response.content == data
    wait_closed(server, "whole")


def test_file_wrapper_sends_the_rest_of_a_seeked_file(server, data_file):
    path, data = data_file
    params = {"path": str(path), "offset": "12345", "tag": "seeked"}
    response = server.get("/file", params=params)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(data) - 12345)
    assert response.content == data[12345:]
    wait_closed(server, "seeked")


def test_file_wrapper_iterates_a_bytesio_in_blocks(server):
    params = {"size": "100003", "blksize": "4096", "tag": "bytesio"}
    response = server.get("/bytesio", params=params)
    assert response.status_code == 200
    assert response.content == pattern(100_003)
    wait_closed(server, "bytesio")


# -- what the application writes to its streams ------------------------------------------


def test_print_stderr_and_wsgi_errors_land_in_the_error_log(server):
    assert "--log-to-terminal" not in server.args
    response = server.get("/logging")
    assert response.status_code == 200
    server.wait_for_log("print() marker from the application")
    server.wait_for_log("sys.stderr marker from the application")
    log = server.wait_for_log("wsgi.errors marker from the application")
    assert server.error_log_path.is_file()
    for line in log.splitlines():
        if "marker from the application" in line:
            assert line.startswith("["), line


# -- threads -----------------------------------------------------------------------------


def sleep_reports(server, count: int) -> list[dict]:
    with ThreadPoolExecutor(count) as pool:
        responses = list(pool.map(lambda _: server.get("/sleep"), range(count)))
    assert [response.status_code for response in responses] == [200] * count
    return sorted((json.loads(response.text) for response in responses), key=lambda r: r["start"])


def test_requests_run_concurrently_on_n_threads(start):
    server = start("--threads", "4")
    began = time.monotonic()
    reports = sleep_reports(server, 4)
    assert time.monotonic() - began < 2.0
    assert len({report["thread"] for report in reports}) == 4
    # Every request started before any ended: they all overlapped.
    assert max(report["start"] for report in reports) < min(report["end"] for report in reports)
    assert max(report["end"] for report in reports) - reports[0]["start"] < 2.0


def test_one_thread_serializes_requests(start):
    server = start("--threads", "1")
    reports = sleep_reports(server, 3)
    assert len({report["thread"] for report in reports}) == 1
    for earlier, later in itertools.pairwise(reports):
        assert later["start"] >= earlier["end"]
    assert reports[-1]["end"] - reports[0]["start"] >= 3.0


# -- wsgiref.validate --------------------------------------------------------------------


def test_every_kind_of_request_passes_wsgiref_validate(start, data_file):
    # One thread: each request's result is closed and dropped before the next starts,
    # so any complaint from the validator is in the log by the end.
    server = start("--threads", "1")
    path, data = data_file

    response = server.get("/validated/list")
    assert (response.status_code, response.content) == (200, b"hello world")

    response = server.get("/validated/generator")
    assert (response.status_code, response.content) == (200, b"one,two,three")

    response = server.post("/validated/post", data=b"line one\nline two\nrest")
    assert response.status_code == 200
    assert response.content == b"line=line one\nrest=line two\nrest"

    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes(server.port, "/validated/generator", method="HEAD"))
        head = read_until_closed(sock)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert head.endswith(b"\r\n\r\n")

    response = server.get("/validated/file", params={"path": str(path), "tag": "validated"})
    assert response.status_code == 200
    assert response.content == data

    # A last request through the one thread, after which everything above is finished.
    assert server.get("/list").status_code == 200
    log = server.error_log()
    assert "Warning" not in log
    assert "AssertionError" not in log
    assert "Traceback" not in log


def test_wsgiref_validate_complaints_do_reach_the_error_log(start):
    """The control for the test above: the validator is active and its failures show."""
    server = start()
    response = server.get("/validated/no-content-type")
    assert response.status_code == 500
    server.wait_for_log("AssertionError: No Content-Type header found in headers")
