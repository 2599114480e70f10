"""The client timeouts, with mod_wsgi-express's names and Apache's rules: --header-timeout
(and its max and min rate), --body-timeout (and its max and min rate), --keep-alive-timeout,
and --socket-timeout / --response-socket-timeout for a client that takes no response bytes.

A slow client is given the time a steady one needs (one more second per MIN-RATE bytes)
and no more; where a response can still be sent it gets 408 before the connection closes.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from conftest import wait_until

HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def read_all(sock: socket.socket, seconds: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(seconds)
    received = b""
    try:
        while block := sock.recv(65536):
            received += block
    except ConnectionResetError:
        pass
    return received


def closed_at(sock: socket.socket, seconds: float = 10) -> tuple[bytes, float]:
    """What the server sent before closing, and after how long from now."""
    started = time.monotonic()
    received = read_all(sock, seconds)
    return received, time.monotonic() - started


def test_issue_17_a_partial_head_gets_408_at_header_timeout(ferrule_server, mode_options):
    server = ferrule_server("environ.wsgi", "--header-timeout", "1", *mode_options)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never the blank line
        received, after = closed_at(sock)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"--header-timeout" in received
    assert 0.9 <= after < 3


def test_issue_17_an_idle_keep_alive_connection_closes_at_keep_alive_timeout(
    ferrule_server, mode_options
):
    server = ferrule_server(
        "environ.wsgi", "--keep-alive-timeout", "1", "--header-timeout", "20", *mode_options
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(HEAD.replace(b"GET", b"HEAD"))
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        received, after = closed_at(sock)
    # Nothing was asked, so nothing is answered: the connection just closes (Apache too).
    assert received == b""
    assert 0.9 <= after < 3


def test_issue_17_a_request_started_after_a_keep_alive_wait_gets_the_header_timeout(
    ferrule_server, mode_options
):
    # The keep-alive limit covers only the wait for the first byte; the head then has
    # --header-timeout, as in Apache.
    server = ferrule_server(
        "environ.wsgi", "--keep-alive-timeout", "1", "--header-timeout", "3", *mode_options
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /two HTTP/1.1\r\n")
        time.sleep(2)  # past the keep-alive limit, within the header limit: the client is slow
        sock.sendall(b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
        received = read_all(sock)
    assert received.startswith(b"HTTP/1.1 200 "), received
    assert b'"PATH_INFO": "/two"' in received


def test_issue_17_keep_alive_timeout_0_turns_keep_alive_off(ferrule_server, mode_options):
    server = ferrule_server("environ.wsgi", "--keep-alive-timeout", "0", *mode_options)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(HEAD)
        received, after = closed_at(sock)
    assert received.startswith(b"HTTP/1.1 200 ")
    assert b"\r\nconnection: close\r\n" in received.lower()
    assert after < 3


def test_issue_17_a_head_sent_steadily_earns_time_up_to_header_max_timeout(
    ferrule_server, mode_options
):
    server = ferrule_server(
        "environ.wsgi",
        "--header-timeout",
        "1",
        "--header-max-timeout",
        "3",
        "--header-min-rate",
        "20",
        *mode_options,
    )
    # 40 bytes every 0.5 s earns two seconds a step: a 2 s head is served.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /steady HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(4):
            time.sleep(0.5)
            sock.sendall(b"X-Padding: " + b"p" * 27 + b"\r\n")
        sock.sendall(b"Connection: close\r\n\r\n")
        received = read_all(sock)
    assert received.startswith(b"HTTP/1.1 200 "), received
    # However steady, a head never gets more than --header-max-timeout.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /forever HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        started = time.monotonic()
        received = b""
        sock.settimeout(0.25)
        while time.monotonic() - started < 8:
            try:
                sock.sendall(b"X-Padding: " + b"p" * 27 + b"\r\n")
                block = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not block:
                break
            received += block
        after = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert 2.9 <= after < 5


def test_issue_17_a_stalled_body_gets_408_at_body_timeout(ferrule_server, mode_options):
    server = ferrule_server(
        "input.wsgi", "--body-timeout", "1", "--body-min-rate", "0", *mode_options
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /read HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n")
        sock.sendall(b"x" * 10)  # and no more
        received, after = closed_at(sock)
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"--body-timeout" in received
    assert 0.9 <= after < 3


def test_issue_17_a_body_sent_steadily_earns_time(ferrule_server, mode_options):
    server = ferrule_server(
        "input.wsgi", "--body-timeout", "1", "--body-min-rate", "10", *mode_options
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /read HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 80\r\n"
            b"Connection: close\r\n\r\n"
        )
        for _ in range(4):  # 20 bytes every 0.6 s: 2.4 s in all, two seconds earned a step
            sock.sendall(b"y" * 20)
            time.sleep(0.6)
        received = read_all(sock)
    assert received.startswith(b"HTTP/1.1 200 "), received
    assert b'"length": 80,' in received


def test_issue_17_a_client_that_takes_no_response_bytes_is_dropped_at_socket_timeout(
    ferrule_server, mode_options, tmp_path: Path
):
    markers = tmp_path / "markers"
    markers.mkdir()
    server = ferrule_server(
        "responses.wsgi",
        "--socket-timeout",
        "1",
        *mode_options,
        env={"RESPONSES_MARKER_DIR": str(markers)},
    )
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /close/forever?tag=stuck HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        # The client reads nothing: once the socket buffers are full, the server's write
        # waits, gives up after a second, and the endless generator is closed.
        marker = markers / "stuck"
        wait_until(lambda: marker.exists() and marker.read_text() == "closed\n", timeout=15)
    assert server.get("/list").content == b"hello world"


@pytest.mark.parametrize(
    "options",
    [("--response-socket-timeout", "1", "--socket-timeout", "60")],
    ids=["response-socket-timeout"],
)
def test_issue_17_response_socket_timeout_overrides_socket_timeout(
    ferrule_server, tmp_path: Path, options
):
    markers = tmp_path / "markers"
    markers.mkdir()
    server = ferrule_server("responses.wsgi", *options, env={"RESPONSES_MARKER_DIR": str(markers)})
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"GET /close/forever?tag=stuck HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        marker = markers / "stuck"
        wait_until(lambda: marker.exists() and marker.read_text() == "closed\n", timeout=15)


def test_issue_17_a_slow_reader_holds_memory_not_the_application_thread(
    ferrule_server, mode_options, tmp_path: Path
):
    markers = tmp_path / "markers"
    markers.mkdir()
    server = ferrule_server(
        "responses.wsgi",
        "--threads",
        "1",
        "--response-buffer-size",
        str(32 << 20),
        *mode_options,
        env={"RESPONSES_MARKER_DIR": str(markers)},
    )
    with socket.socket() as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", server.port))
        # 16 MiB produced by the application's one thread, in 64 KiB pieces, for a client
        # that reads nothing: far more than the socket buffers hold, less than the buffer.
        slow.sendall(
            b"GET /bytesio?size=16777216&blksize=65536&tag=slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        # The thread is free again: the next request is served while the first client
        # still has not read its response.
        assert server.get("/list", timeout=20).content == b"hello world"
        slow.settimeout(10)
        assert slow.recv(65536).startswith(b"HTTP/1.1 200 ")


def accept_queue(port: int) -> int:
    """Connections the kernel holds for the listener on `port`, not yet accepted."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            # For a listening socket, rx_queue is the length of its accept queue.
            return int(queues.split(":")[1], 16)
    raise AssertionError(f"no listener on port {port}")


def test_issue_17_beyond_max_clients_new_connections_wait_in_the_kernel(
    ferrule_server, mode_options
):
    server = ferrule_server(
        "input.wsgi",
        *mode_options,
        "--processes",
        "1",
        "--threads",
        "1",
        "--max-clients",
        "1",
        "--request-buffer-size",
        "0",
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as busy:
        # A request the application is running (it waits for the rest of the body) holds
        # the one slot.
        busy.sendall(
            b"POST /read?tag=busy HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 20\r\n"
            b"Connection: close\r\n\r\n" + b"x" * 10
        )
        wait_until(lambda: "input.wsgi: busy reading" in server.error_log())
        request = b"GET /fixed HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        waiting = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in "ab"]
        try:
            for sock in waiting:
                sock.sendall(request)
            # One may have been accepted before the gate closed; the next waits in the
            # kernel's queue, not in the server.
            wait_until(lambda: accept_queue(server.port) >= 1)
            busy.sendall(b"x" * 10)
            assert read_all(busy).startswith(b"HTTP/1.1 200 ")
            # The slot is free again: the waiting connections are accepted and served.
            for sock in waiting:
                assert read_all(sock, 20).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in waiting:
                sock.close()


def test_issue_17_a_client_that_leaves_mid_body_never_reaches_the_application(
    ferrule_server, mode_options
):
    # A slow-body attacker that gives up: no application thread, no traceback, one
    # access-log line (400) saying it happened.
    server = ferrule_server("input.wsgi", "--access-log", *mode_options)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /read?tag=gone HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
            + b"x" * 10
        )
    access_log = server.server_root / "access_log"
    wait_until(lambda: access_log.exists() and "/read?tag=gone" in access_log.read_text())
    (line,) = [line for line in access_log.read_text().splitlines() if "tag=gone" in line]
    assert '" 400 ' in line, line
    # The application would have written this before its first read.
    assert "input.wsgi: gone reading" not in server.error_log()
    assert "Traceback" not in server.error_log()


def test_issue_17_a_slow_body_does_not_take_a_max_clients_slot(ferrule_server, mode_options):
    # The one slot counts requests handed to the application, not clients still sending: a
    # slow body read ahead by the front end must not lock the next client out (the first
    # --max-clients counted it, and 22 slow bodies took every slot).
    server = ferrule_server(
        "input.wsgi", "--processes", "1", "--threads", "1", "--max-clients", "1", *mode_options
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as slow:
        slow.sendall(
            b"POST /read HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n" + b"x" * 10
        )
        for _ in range(3):
            response = server.get("/fixed", timeout=10)
            assert response.status_code == 200
