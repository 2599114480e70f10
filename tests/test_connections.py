"""Holding many client connections at once: the server raises its own open-files limit."""

from __future__ import annotations

import resource
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import requests

from conftest import wait_until

# Far below what a server should hold, and what the soft limit often is under a service
# manager or a login shell.
INHERITED_SOFT_LIMIT = 256
CONNECTIONS = 600


def read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        block = sock.recv(4096)
        assert block, "the server closed a connection it should keep open"
        data += block
    return data


def test_connections_beyond_the_inherited_soft_limit_are_all_served(ferrule_server, mode_options):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard >= CONNECTIONS * 2, f"this machine's hard open-files limit is {hard}"
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = ferrule_server(
        "environ.wsgi",
        *mode_options,
        command=[
            "prlimit",
            f"--nofile={INHERITED_SOFT_LIMIT}:{hard}",
            sys.executable,
            "-m",
            "ferrule",
            "start-server",
        ],
    )
    # HEAD: the answer is its head alone, so each read ends where the next begins.
    request = f"HEAD / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    sockets = []
    try:
        for _ in range(CONNECTIONS):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(request)
            sockets.append(sock)
        heads = [read_head(sock) for sock in sockets]
        assert all(head.startswith(b"HTTP/1.1 200 ") for head in heads)
        # All of them still open and served again.
        for sock in sockets:
            sock.sendall(request)
        assert all(read_head(sock).startswith(b"HTTP/1.1 200 ") for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()


def test_connections_that_send_heads_in_time_are_not_dropped(ferrule_server, mode_options):
    server = ferrule_server("environ.wsgi", "--header-timeout", "1", *mode_options)
    request = f"HEAD / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for _ in range(6):  # 3 s on one connection, each head within the limit
            time.sleep(0.5)
            sock.sendall(request)
            assert read_head(sock).startswith(b"HTTP/1.1 200 ")


def thread_ticks(pid: int, name: str) -> int | None:
    """utime+stime of the thread of `pid` named `name`, or None when there is none."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == name:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
    return None


def test_issue_17_a_second_front_end_reactor_serves_connections(ferrule_server):
    server = ferrule_server("environ.wsgi", "--reactor-threads", "2", "--threads", "4")
    # The port accepts (the kernel queues) before the front end has started its threads.
    wait_until(lambda: thread_ticks(server.process.pid, "ferrule-http-1") is not None)
    before = thread_ticks(server.process.pid, "ferrule-http-1")
    errors = []

    def client(index: int) -> None:
        # A new connection every 10 requests: which reactor accepts one is a race between
        # their threads, and a loaded machine may give a few connections all to one.
        for batch in range(10):
            with requests.Session() as session:
                for request in range(batch * 10, batch * 10 + 10):
                    response = session.get(f"{server.url}/c{index}/r{request}", timeout=30)
                    if response.json()["environ"]["PATH_INFO"] != f"/c{index}/r{request}":
                        errors.append(response.text)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # The second reactor took its share of the connections: it spent CPU on them.
    assert thread_ticks(server.process.pid, "ferrule-http-1") > before
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
