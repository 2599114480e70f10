"""The logs never make the server wait on a disk, and never lose a line.

A slow disk is played by a FIFO that nobody reads for a while: writing to it blocks as a
stalled disk would. The access log and the static files are made FIFOs here.
Issue 15: https://github.com/ferrule/ferrule/issues/15 ("The reactor never waits on a disk").
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket

import pytest
import requests

import conftest
from conftest import wait_until

LINE = re.compile(
    r'^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET /n/(\d+) HTTP/1\.1" 200 \d+$'
)
# The kernel's smallest pipe: a few dozen access-log lines fill it.
SMALL_PIPE = 4096
REQUESTS = 300


@pytest.fixture
def fifo_access_log(tmp_path, monkeypatch):
    """A server root whose access_log is a FIFO with a reader that reads nothing until the
    test says so (opened first, so that the server's open for writing does not wait)."""
    port = conftest.free_port()
    monkeypatch.setattr(conftest, "free_port", lambda: port)
    server_root = tmp_path / f"server-root-{port}"
    server_root.mkdir()
    path = server_root / "access_log"
    os.mkfifo(path)
    read_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(read_fd, fcntl.F_SETPIPE_SZ, SMALL_PIPE)
    yield read_fd
    os.close(read_fd)


def read_available(fd: int, received: bytearray) -> bytes:
    try:
        while block := os.read(fd, 65536):
            received += block
    except BlockingIOError:
        pass
    return bytes(received)


def open_writer(path) -> int | None:
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None


def get_numbered(server, count: int) -> None:
    with requests.Session() as session:
        for number in range(count):
            response = session.get(f"{server.url}/n/{number}", timeout=10)
            assert response.status_code == 200


def test_issue_15_a_stalled_access_log_does_not_stall_requests(
    ferrule_server, mode_options, fifo_access_log
):
    server = ferrule_server("environ.wsgi", *mode_options, "--access-log")
    # Far more lines than the pipe holds: with writes on the reactor thread, the server
    # stopped answering after the first few dozen.
    get_numbered(server, REQUESTS)
    received = bytearray()

    def all_lines_arrived():
        return read_available(fifo_access_log, received).count(b"\n") >= REQUESTS

    wait_until(all_lines_arrived)
    lines = received.decode().splitlines()
    assert len(lines) == REQUESTS
    numbers = [int(LINE.match(line).group(1)) for line in lines]
    assert numbers == list(range(REQUESTS))


def test_issue_15_lines_waiting_for_a_stalled_log_are_written_at_a_graceful_stop(
    ferrule_server, mode_options, fifo_access_log
):
    server = ferrule_server("environ.wsgi", *mode_options, "--access-log")
    get_numbered(server, REQUESTS)
    server.signal(signal.SIGTERM)
    received = bytearray()
    # The server waits for its log before it exits.
    wait_until(lambda: read_available(fifo_access_log, received) and server.process.poll() == 0)
    read_available(fifo_access_log, received)
    assert len(received.decode().splitlines()) == REQUESTS


def test_issue_15_every_access_log_line_is_written_before_the_server_exits(
    ferrule_server, mode_options
):
    server = ferrule_server("environ.wsgi", *mode_options, "--access-log")
    get_numbered(server, REQUESTS)
    assert server.stop() == 0
    lines = (server.server_root / "access_log").read_text().splitlines()
    assert len(lines) == REQUESTS
    assert all(LINE.match(line) for line in lines)


def test_issue_15_an_open_that_hangs_does_not_stall_other_requests(
    ferrule_server, mode_options, tmp_path
):
    # Opening a FIFO for reading waits for a writer, as an open on a hung network mount
    # waits for its server.
    site = tmp_path / "site"
    site.mkdir()
    (site / "ok.txt").write_text("fine")
    os.mkfifo(site / "stalled.txt")
    server = ferrule_server("environ.wsgi", *mode_options, "--url-alias", "/static", str(site))
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    stalled.sendall(b"GET /static/stalled.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    try:
        # Another connection, served while the first one's open still waits.
        assert server.get("/static/ok.txt", timeout=5).text == "fine"
        assert server.get("/", timeout=5).status_code == 200
    finally:
        # Give the waiting open a writer; it can open without waiting once the server's
        # open for reading is under way.
        os.close(wait_until(lambda: open_writer(site / "stalled.txt")))
        answer = b""
        while block := stalled.recv(4096):
            answer += block
        stalled.close()
    assert answer.startswith(b"HTTP/1.1 200")


FORKING_APP = """
import os
import sys


def application(environ, start_response):
    pid = os.fork()
    if pid == 0:
        print("printed by the forked child", file=sys.stderr, flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"forked"]
"""


def test_issue_15_a_child_the_application_forks_still_writes_the_error_log(
    ferrule_server, mode_options, tmp_path
):
    # The log writer thread is not copied into a forked child: its lines are written
    # directly there, not queued for a thread that does not exist.
    script = tmp_path / "forking.wsgi"
    script.write_text(FORKING_APP)
    server = ferrule_server(script, *mode_options)
    assert server.get("/").text == "forked"
    server.wait_for_log("printed by the forked child")


DYING_APP = """
import os
import signal
import sys


def application(environ, start_response):
    print("last words before the crash", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_issue_15_what_the_application_printed_before_a_crash_is_in_the_error_log(
    ferrule_server, mode_options, tmp_path
):
    # Application threads write their own lines at once: none waits in a queue that a
    # crash would lose.
    script = tmp_path / "dying.wsgi"
    script.write_text(DYING_APP)
    server = ferrule_server(script, *mode_options)
    try:
        status = server.get("/").status_code
    except requests.ConnectionError:
        # Embedded mode: the process that held the connection is gone.
        status = None
    assert status in (None, 502)
    server.wait_for_log("last words before the crash")
