"""HTTP/1.x on the wire: keep-alive, pipelining, HTTP/1.0 clients, HEAD and malformed
requests, written by hand on plain sockets so the framing itself is what is checked.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from typing import Self

import pytest
import requests

FIXED_BODY = bytes(index % 251 for index in range(1000))  # what input.wsgi's /fixed returns


@dataclass
class Response:
    status_line: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split(" ", 2)[1])

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def json(self) -> dict:
        return json.loads(self.body)


class Connection:
    """One client connection that reads responses one at a time off the byte stream,
    framed by Content-Length or chunked encoding, as a client keeping it open must."""

    def __init__(self, port: int, timeout: float = 10):
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, what: str) -> None:
        block = self.sock.recv(65536)
        assert block, f"connection closed inside {what}; buffered: {self.buffer!r}"
        self.buffer += block

    def _take(self, count: int, what: str) -> bytes:
        while len(self.buffer) < count:
            self._fill(what)
        taken, self.buffer = self.buffer[:count], self.buffer[count:]
        return taken

    def _take_line(self, what: str) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill(what)
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def read_response(self, head_only: bool = False) -> Response:
        while b"\r\n\r\n" not in self.buffer:
            self._fill("a response head")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = []
        for line in header_lines:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        response = Response(status_line, headers, b"")
        if head_only:
            return response
        if "chunked" in ",".join(response.header("Transfer-Encoding")).lower():
            body = b""
            while True:
                size = int(self._take_line("a chunk size").split(b";")[0], 16)
                if size == 0:
                    while self._take_line("the trailers"):
                        pass
                    break
                body += self._take(size, "a chunk")
                assert self._take(2, "a chunk end") == b"\r\n"
            response.body = body
        elif response.header("Content-Length"):
            (length,) = response.header("Content-Length")
            response.body = self._take(int(length), "a body")
        else:
            response.body = self.read_until_closed()
        return response

    def read_until_closed(self) -> bytes:
        """Everything left until the server closes; fails if it keeps the connection open."""
        received, self.buffer = self.buffer, b""
        while True:
            try:
                block = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(
                    f"the server kept the connection open; received so far: {received!r}"
                ) from None
            except ConnectionResetError:
                return received
            if not block:
                return received
            received += block


def request(
    port: int, path: str = "/", method: str = "GET", version: str = "HTTP/1.1", *extra: str
) -> bytes:
    lines = [f"{method} {path} {version}", f"Host: 127.0.0.1:{port}", *extra]
    return ("\r\n".join([*lines, "", ""])).encode("ascii")


@pytest.fixture
def server(ferrule_server, mode_options):
    return ferrule_server("environ.wsgi", *mode_options)


@pytest.fixture
def input_server(ferrule_server, mode_options):
    return ferrule_server("input.wsgi", *mode_options)


def environ_of(response: Response) -> dict:
    assert response.status == 200, response
    return response.json()["environ"]


# -- keep-alive and pipelining -----------------------------------------------------------


def test_keep_alive_serves_two_requests_on_one_connection(server):
    with Connection(server.port) as connection:
        connection.send(request(server.port, "/first"))
        first = connection.read_response()
        connection.send(request(server.port, "/second"))
        second = connection.read_response()
        client_port = connection.sock.getsockname()[1]
    assert first.status_line == "HTTP/1.1 200 OK"
    assert second.status_line == "HTTP/1.1 200 OK"
    assert "close" not in ",".join(first.header("Connection")).lower()
    assert environ_of(first)["PATH_INFO"] == "/first"
    assert environ_of(second)["PATH_INFO"] == "/second"
    # Same connection: the application saw the same client port both times.
    assert environ_of(first)["REMOTE_PORT"] == str(client_port)
    assert environ_of(second)["REMOTE_PORT"] == str(client_port)


def test_keep_alive_with_a_requests_session(server):
    with requests.Session() as session:
        seen = [
            session.get(f"{server.url}/n{index}", timeout=10).json()["environ"]
            for index in range(3)
        ]
    assert [environ["PATH_INFO"] for environ in seen] == ["/n0", "/n1", "/n2"]
    assert len({environ["REMOTE_PORT"] for environ in seen}) == 1


def test_issue_17_requests_sent_a_byte_at_a_time_are_served_in_order(input_server):
    # Every read of the connection ends somewhere else: inside the request line, a field,
    # a chunk-size line, chunk data, the trailer; the answers are those of whole requests.
    port = input_server.port
    body = b"a" * 300 + b"\n" + b"b" * 200
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]))
    stream = (
        request(port, "/read", "POST", "HTTP/1.1", "Transfer-Encoding: chunked")
        + chunked
        + b"0\r\nX-Trailer: fine\r\n\r\n"
        + request(port, "/read", "POST", "HTTP/1.1", f"Content-Length: {len(body)}")
        + body
    )
    with Connection(port) as connection:
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index in range(len(stream)):
            connection.send(stream[index : index + 1])
        first = connection.read_response()
        second = connection.read_response()
    for response in (first, second):
        assert response.status == 200, response
        assert response.json()["length"] == len(body)
        assert response.json()["sha256"] == hashlib.sha256(body).hexdigest()


def test_keep_alive_after_a_request_with_a_body(input_server):
    port = input_server.port
    with Connection(port) as connection:
        body = b"line one\nline two\n"
        connection.send(
            request(port, "/read", "POST", "HTTP/1.1", f"Content-Length: {len(body)}") + body
        )
        first = connection.read_response()
        connection.send(request(port, "/fixed"))
        second = connection.read_response()
    assert first.status == 200
    assert first.json()["length"] == len(body)
    assert second.status == 200
    assert second.body == FIXED_BODY


def test_pipelined_requests_are_answered_in_order(server):
    paths = ["/one", "/two", "/three"]
    with Connection(server.port) as connection:
        connection.send(b"".join(request(server.port, path) for path in paths))
        responses = [connection.read_response() for _ in paths]
        # Still open and usable after the pipeline.
        connection.send(request(server.port, "/after", "GET", "HTTP/1.1", "Connection: close"))
        after = connection.read_response()
        assert connection.read_until_closed() == b""
    assert [environ_of(response)["PATH_INFO"] for response in responses] == paths
    assert environ_of(after)["PATH_INFO"] == "/after"


def test_pipelined_requests_with_bodies(input_server):
    port = input_server.port
    bodies = [b"a" * 10, b"b\n" * 5000, b""]
    pipeline = b"".join(
        request(port, "/read", "POST", "HTTP/1.1", f"Content-Length: {len(body)}") + body
        for body in bodies
    )
    with Connection(port) as connection:
        connection.send(pipeline)
        lengths = [connection.read_response().json()["length"] for _ in bodies]
    assert lengths == [len(body) for body in bodies]


def test_connection_close_is_honoured(server):
    with Connection(server.port) as connection:
        connection.send(request(server.port, "/", "GET", "HTTP/1.1", "Connection: close"))
        response = connection.read_response()
        assert connection.read_until_closed() == b""
    assert response.status == 200


# -- HTTP/1.0 ----------------------------------------------------------------------------


def test_http_1_0_request_gets_a_compatible_response_and_the_connection_closes(input_server):
    port = input_server.port
    with Connection(port) as connection:
        connection.send(request(port, "/fixed", "GET", "HTTP/1.0"))
        response = connection.read_response(head_only=True)
        rest = connection.read_until_closed()
    assert response.status_line.split(" ", 1)[0] in ("HTTP/1.0", "HTTP/1.1")
    assert response.status == 200
    # An HTTP/1.0 client knows nothing of chunked encoding.
    assert response.header("Transfer-Encoding") == []
    assert response.header("Content-Length") in ([], [str(len(FIXED_BODY))])
    assert "keep-alive" not in ",".join(response.header("Connection")).lower()
    assert rest == FIXED_BODY


def test_http_1_0_keep_alive_is_honoured_for_a_response_of_known_length(input_server):
    port = input_server.port
    with Connection(port) as connection:
        connection.send(request(port, "/fixed", "GET", "HTTP/1.0", "Connection: keep-alive"))
        first = connection.read_response()
        connection.send(request(port, "/fixed", "GET", "HTTP/1.0"))
        second = connection.read_response(head_only=True)
        rest = connection.read_until_closed()
    assert first.status == second.status == 200
    assert "keep-alive" in ",".join(first.header("Connection")).lower()
    assert first.body == FIXED_BODY
    assert rest == FIXED_BODY


def test_http_1_0_request_with_a_streamed_response_is_close_delimited(ferrule_server, mode_options):
    server = ferrule_server("responses.wsgi", *mode_options)
    with Connection(server.port) as connection:
        connection.send(request(server.port, "/generator", "GET", "HTTP/1.0"))
        response = connection.read_response(head_only=True)
        rest = connection.read_until_closed()
    assert response.status == 200
    assert response.header("Transfer-Encoding") == []
    assert rest == b"one,two,three"


def test_http_1_0_environ(server):
    with Connection(server.port) as connection:
        connection.send(request(server.port, "/ten", "GET", "HTTP/1.0"))
        response = connection.read_response(head_only=True)
        body = connection.read_until_closed()
    assert response.status == 200
    assert json.loads(body)["environ"]["SERVER_PROTOCOL"] == "HTTP/1.0"


# -- HEAD --------------------------------------------------------------------------------


def test_head_returns_the_headers_of_get_without_a_body(input_server):
    port = input_server.port
    with Connection(port) as connection:
        connection.send(request(port, "/fixed"))
        get = connection.read_response()
        connection.send(request(port, "/fixed", "HEAD"))
        head = connection.read_response(head_only=True)
        # The connection stays usable: the next response starts right after HEAD's head,
        # so any body bytes sent for HEAD would corrupt it.
        connection.send(request(port, "/fixed", "GET", "HTTP/1.1", "Connection: close"))
        after = connection.read_response()
        assert connection.read_until_closed() == b""
    assert get.status == head.status == 200
    assert get.body == FIXED_BODY
    assert head.header("Content-Length") == get.header("Content-Length") == ["1000"]
    assert head.header("Content-Type") == get.header("Content-Type")
    assert head.header("X-Method") == ["HEAD"]
    assert after.status == 200
    assert after.body == FIXED_BODY


def test_head_sends_no_body_before_the_connection_closes(input_server):
    port = input_server.port
    with Connection(port) as connection:
        connection.send(request(port, "/fixed", "HEAD", "HTTP/1.1", "Connection: close"))
        head = connection.read_response(head_only=True)
        assert connection.read_until_closed() == b""
    assert head.status == 200
    assert head.header("Content-Length") == ["1000"]


# -- malformed requests ------------------------------------------------------------------

MALFORMED = {
    "garbage": b"this is not http at all\r\n\r\n",
    "no-version": b"GET /\r\n\r\n",
    "bad-version": b"GET / HTTP/x.y\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "control-bytes": b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n",
    "bad-header": b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_request_gets_400_and_the_server_carries_on(server, raw):
    with Connection(server.port) as connection:
        connection.send(raw)
        received = connection.read_until_closed()
    status_line = received.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 400"), received
    assert server.process.poll() is None
    response = server.get("/still-alive")
    assert response.status_code == 200
    assert response.json()["environ"]["PATH_INFO"] == "/still-alive"


def test_malformed_request_after_a_good_one_on_the_same_connection(server):
    with Connection(server.port) as connection:
        connection.send(request(server.port, "/good"))
        good = connection.read_response()
        connection.send(MALFORMED["garbage"])
        received = connection.read_until_closed()
    assert environ_of(good)["PATH_INFO"] == "/good"
    assert received.startswith(b"HTTP/1.1 400"), received
    assert server.get("/").status_code == 200


# -- requests the server answers itself (RFC 9112 3.2, RFC 3986, Apache) -----------------

REFUSED = {
    # RFC 9112 3.2: HTTP/1.1 needs exactly one valid Host.
    "no-host": (b"GET / HTTP/1.1\r\n\r\n", 400, "Host"),
    "two-hosts": (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", 400, "Host"),
    "invalid-host": (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "Host"),
    # RFC 3986 2.1: '%' starts a two-digit hex escape; Apache answers 400 otherwise.
    "bad-escape": (b"GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "escape"),
    "short-escape": (b"GET /a%2 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "escape"),
    # RFC 9112 3.2: a fragment is never part of a request target (hyper used to drop it
    # and serve the request as if sent without it).
    "fragment": (b"GET /x?a=1#f HTTP/1.1\r\nHost: x\r\n\r\n", 400, "fragment"),
    # Apache: an encoded NUL in the path is not found.
    "encoded-nul": (b"GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 404, "NUL"),
}


@pytest.mark.parametrize("raw", REFUSED.values(), ids=REFUSED.keys())
def test_issue_15_bad_targets_and_hosts_are_answered_by_the_server(server, raw):
    sent, status, reason = raw
    with Connection(server.port) as connection:
        connection.send(sent)
        response = connection.read_response()
    # environ.wsgi answers everything with 200 and JSON: these never reach it.
    assert response.status == status, response
    assert reason.lower() in response.body.decode("latin-1").lower(), response.body
    assert response.header("Content-Type") == ["text/html; charset=utf-8"]
    assert server.get("/still-alive").status_code == 200


# What hyper let through to the application with a 200 (issue 17): each is refused with
# the status RFC 9112/9110 give, never reaches the application, and the connection closes.
STRICT = {
    "bare-lf": (b"GET / HTTP/1.1\nHost: x\n\n", 400, "bare LF"),
    "bel-in-value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x07b\r\n\r\n", 400, "control byte"),
    "del-in-value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x7fb\r\n\r\n", 400, "control byte"),
    "nul-in-target": (b"GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "percent-encoded"),
    "authority-form-get": (b"GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "authority"),
    "leading-empty-lines": (b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "empty line"),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400, "obs-fold"),
    "content-length-and-chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "both",
    ),
    "forbidden-trailer": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"1\r\na\r\n0\r\nContent-Length: 5\r\n\r\n",
        400,
        "trailer field",
    ),
    "bad-chunk-size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "hexadecimal",
    ),
    "http-2-version": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP/1.0 and HTTP/1.1"),
    "gzip-coding": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
        "transfer coding",
    ),
}


@pytest.mark.parametrize("raw", STRICT.values(), ids=STRICT.keys())
def test_issue_17_requests_rfc_9112_forbids_are_refused_and_the_connection_closed(server, raw):
    sent, status, reason = raw
    with Connection(server.port) as connection:
        connection.send(sent)
        response = connection.read_response()
        assert connection.read_until_closed() == b""
    assert response.status == status, response
    assert reason.lower() in response.body.decode("latin-1").lower(), response.body
    assert response.header("Connection") == ["close"]
    assert server.get("/still-alive").status_code == 200


def test_http_1_0_without_host_is_served(server):
    with Connection(server.port) as connection:
        connection.send(b"GET /ten HTTP/1.0\r\n\r\n")
        response = connection.read_response(head_only=True)
        body = connection.read_until_closed()
    assert response.status == 200
    assert json.loads(body)["environ"]["PATH_INFO"] == "/ten"


def test_raw_non_utf8_target_is_refused_with_400(server):
    # A target must be ASCII (RFC 9112 3.2, RFC 3986); raw UTF-8 too (test_environ.py).
    with Connection(server.port) as connection:
        connection.send(b"GET /caf\xe9 HTTP/1.1\r\nHost: x\r\n\r\n")
        received = connection.read_until_closed()
    assert received.startswith(b"HTTP/1.1 400"), received


def test_issue_15_options_star_is_answered_by_the_server(server):
    with Connection(server.port) as connection:
        connection.send(request(server.port, "*", "OPTIONS"))
        response = connection.read_response()
        # The connection stays usable.
        connection.send(request(server.port, "/after"))
        after = connection.read_response()
    assert response.status == 200
    assert response.body == b""
    assert response.header("Content-Length") == ["0"]
    (allow,) = response.header("Allow")
    assert {"GET", "HEAD", "POST", "OPTIONS"} <= {method.strip() for method in allow.split(",")}
    assert environ_of(after)["PATH_INFO"] == "/after"


def test_issue_15_star_target_with_another_method_is_400(server):
    with Connection(server.port) as connection:
        connection.send(request(server.port, "*", "GET"))
        response = connection.read_response()
    assert response.status == 400
