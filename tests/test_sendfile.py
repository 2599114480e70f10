"""wsgi.file_wrapper over a real file, byte-exact in both modes; in embedded mode the kernel's
sendfile sends it."""

import hashlib
import os
import socket
import subprocess

import pytest
import requests

from conftest import wait_until

SIZE = 5 * 1024 * 1024 + 123


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture
def server(ferrule_server, mode_options):
    # Daemon mode: the daemon reads the file on its blocking pool and the front end
    # forwards the blocks (issue 15); embedded mode: sendfile from the front end.
    return ferrule_server("files.wsgi", *mode_options)


def test_a_large_file_arrives_whole(server, big_file):
    response = server.get("/", params={"path": str(big_file)})
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(SIZE)
    assert (
        hashlib.sha256(response.content).digest() == hashlib.sha256(big_file.read_bytes()).digest()
    )


def test_from_an_offset_only_the_rest_is_sent(server, big_file):
    response = server.get("/", params={"path": str(big_file), "offset": "1000"})
    assert response.headers["Content-Length"] == str(SIZE - 1000)
    assert response.content == big_file.read_bytes()[1000:]


def test_keep_alive_and_pipelining_after_a_file(server, big_file, tmp_path):
    small = tmp_path / "small.txt"
    small.write_bytes(b"small file\n")
    request = (
        f"GET /?path={big_file} HTTP/1.1\r\nHost: x\r\n\r\n"
        f"GET /?path={small} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        received = bytearray()
        while chunk := sock.recv(1 << 20):
            received += chunk
    first_head, rest = bytes(received).split(b"\r\n\r\n", 1)
    assert first_head.startswith(b"HTTP/1.1 200")
    assert rest[:SIZE] == big_file.read_bytes()
    second_head, second_body = rest[SIZE:].split(b"\r\n\r\n", 1)
    assert second_head.startswith(b"HTTP/1.1 200")
    assert second_body == b"small file\n"


def test_head_sends_the_length_but_no_bytes(server, big_file):
    response = requests.head(server.url + "/", params={"path": str(big_file)}, timeout=30)
    assert response.headers["Content-Length"] == str(SIZE)
    assert response.content == b""
    assert server.get("/", params={"path": str(big_file)}).content == big_file.read_bytes()


def test_the_bytes_go_through_sendfile(ferrule_server, big_file):
    # Embedded mode: the process that holds the file writes the socket.
    server = ferrule_server("files.wsgi", "--embedded-mode")
    [child] = wait_until(lambda: server.child_pids())
    trace_path = big_file.parent / "strace.txt"
    tracer = subprocess.Popen(
        [
            "strace",
            "-f",
            "-e",
            "trace=sendfile,sendfile64",
            "-o",
            str(trace_path),
            "-p",
            str(child),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: tracer.stderr.readline().find("attached") >= 0, timeout=10)
        response = server.get("/", params={"path": str(big_file)})
        assert len(response.content) == SIZE
    finally:
        tracer.terminate()
        tracer.wait(10)
    calls = [line for line in trace_path.read_text().splitlines() if "sendfile" in line]
    assert calls, "no sendfile call was traced"
    sent = sum(
        int(line.rsplit("=", 1)[1]) for line in calls if line.rsplit("=", 1)[1].strip().isdigit()
    )
    assert sent == SIZE
