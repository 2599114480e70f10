"""The one fixture every integration test builds on: a real ferrule server on a free port.

`ferrule_server(app, *options)` starts `python -m ferrule start-server` in its own process
group, waits until the port accepts connections (no fixed sleeps), and returns a handle.
Every server started in a test is stopped, with its children, when the test ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

APPS = Path(__file__).parent / "apps"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02):
    """Polls `predicate` until it returns something truthy; fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s: {predicate}")


def host_readings(port: int) -> list[tuple[str, str, str]]:
    """Host values a client may send to a server on `port`, each with the SERVER_NAME and
    SERVER_PORT it must give, whoever answers (WSGI application, CGI script, PHP page):
    Apache's reading under `UseCanonicalName Off`, the name in lower case without a
    trailing dot, an IPv6 literal in brackets, Host's port as a number, else `port`."""
    here = str(port)
    return [
        ("example.test:8123", "example.test", "8123"),
        ("EXAMPLE.Test:8123", "example.test", "8123"),
        (f"[::1]:{port}", "[::1]", here),
        ("[::1]", "[::1]", here),
        ("example.test", "example.test", here),
        ("Example.Test.:080", "example.test", "80"),
        ("example.test:", "example.test", here),
    ]


def decode_chunked(raw: bytes) -> tuple[bytes, bool]:
    """The body carried by chunked framing, and whether the terminating chunk arrived."""
    body = b""
    position = 0
    while True:
        line_end = raw.find(b"\r\n", position)
        if line_end < 0:
            return body, False
        size = int(raw[position:line_end].split(b";")[0], 16)
        start = line_end + 2
        if size == 0:
            return body, raw[start : start + 2] == b"\r\n"
        if len(raw) < start + size + 2:
            return body + raw[start : start + size], False
        body += raw[start : start + size]
        assert raw[start + size : start + size + 2] == b"\r\n", raw
        position = start + size + 2


class LoadLoop:
    """Clients sending GET `url` in a loop on keep-alive sessions, while a test restarts,
    reloads or replaces processes; every failure is recorded, and the `pid` field of JSON
    answers, when they have one."""

    def __init__(self, url: str, clients: int = 4):
        self.url = url
        self.failures: list = []
        self.responses = 0
        self.pids: set[int] = set()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]

    def run(self):
        session = requests.Session()
        while not self.done.is_set():
            try:
                response = session.get(self.url, timeout=30)
                if response.status_code != 200:
                    self.failures.append(response.status_code)
                elif response.headers.get("Content-Type") == "application/json":
                    self.pids.add(response.json().get("pid"))
                self.responses += 1
            except requests.RequestException as error:
                self.failures.append(repr(error))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        for thread in self.threads:
            thread.join()


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    server_root: Path
    stdout_path: Path
    stderr_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str = "/", **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.get(self.url + path, **kwargs)

    def post(self, path: str = "/", **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.post(self.url + path, **kwargs)

    @property
    def error_log_path(self) -> Path:
        return self.server_root / "error_log"

    def error_log(self) -> str:
        """The error log so far: the file in the server root, or stderr with
        --log-to-terminal."""
        if "--log-to-terminal" in self.args:
            return self.stderr()
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        return wait_until(lambda: text in self.error_log() and self.error_log(), timeout)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def child_pids(self) -> list[int]:
        """Pids of the server processes the supervisor started."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except FileNotFoundError:
            return []

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        return self.process.returncode


def start_server(
    tmp_path: Path,
    app: str | Path | None,
    *options: str,
    wait: bool = True,
    env: dict | None = None,
    command: list[str] | None = None,
    cwd: Path | None = None,
    server_root: Path | None = None,
) -> Server:
    """`command` replaces `python -m ferrule start-server` (say, a Django `manage.py
    runferrule`); the options follow it all the same. `server_root` reuses a server root
    (one per port otherwise)."""
    port = free_port()
    server_root = server_root or tmp_path / f"server-root-{port}"
    args = list(command) if command else [sys.executable, "-m", "ferrule", "start-server"]
    if app is not None:
        app_path = Path(app)
        args.append(str(app_path if app_path.is_absolute() else APPS / app_path))
    args += ["--host", "127.0.0.1", "--port", str(port), "--server-root", str(server_root)]
    args += list(options)
    stdout_path = tmp_path / f"stdout-{port}.txt"
    stderr_path = tmp_path / f"stderr-{port}.txt"
    process = subprocess.Popen(
        args,
        stdout=stdout_path.open("wb"),
        stderr=stderr_path.open("wb"),
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
        cwd=cwd or tmp_path,
    )
    server = Server(process, port, server_root, stdout_path, stderr_path, args)
    if wait:

        def accepting():
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{server.stderr()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(accepting, START_TIMEOUT)
    return server


@pytest.fixture(params=["embedded", "daemon"])
def mode_options(request) -> tuple[str, ...]:
    """Runs a test once per operating mode: the options that select it. The executor is
    the same code in both, so everything it promises must hold in both."""
    return ("--embedded-mode",) if request.param == "embedded" else ()


@pytest.fixture
def ferrule_server(tmp_path):
    """Factory: `ferrule_server("environ.wsgi", "--threads", "2")` returns a running Server."""
    servers: list[Server] = []

    def start(app="environ.wsgi", *options: str, **kwargs) -> Server:
        server = start_server(tmp_path, app, *options, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def make_reachable(user: str, *paths: Path) -> None:
    """Lets `user` reach each of `paths` (a file, or a folder and what is in it): every
    folder on the way gets o+x (searchable; nothing becomes listable or writable), so
    the privilege tests pass from a clone anywhere root can read, such as under /root or
    in a folder of mode 0700. Fails naming the folder that cannot be opened up, and the
    Python that `user` still cannot run."""
    for path in paths:
        path = Path(path).absolute()
        folders = [path, *path.parents] if path.is_dir() else list(path.parents)
        for folder in folders:
            mode = folder.stat().st_mode
            if mode & 0o001:
                continue
            try:
                os.chmod(folder, mode | 0o001)
            except OSError as error:
                pytest.fail(f"{user} cannot enter {folder} (on the way to {path}): {error}")
    result = subprocess.run(
        ["runuser", "-u", user, "--", sys.executable, "-c", "import ferrule"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{user} cannot run {sys.executable}:\n{result.stderr}")


def run_ferrule(
    *args: str, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    """Runs `python -m ferrule ARGS` to completion (for start-up errors and --help)."""
    return subprocess.run(
        [sys.executable, "-m", "ferrule", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def start_on_terminal(tmp_path: Path, script: Path, *options: str, timeout: float = 30):
    """Starts `python -m ferrule start-server SCRIPT --debug-mode`-style servers on a real
    pseudo-terminal (pexpect), for pdb and gdb; returns the child and the server's URL.
    The caller closes the child (`child.close(force=True)`)."""
    import pexpect

    port = free_port()
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "ferrule",
            "start-server",
            str(script),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--server-root",
            str(tmp_path / f"server-root-{port}"),
            *options,
        ],
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=timeout,
    )
    return child, f"http://127.0.0.1:{port}"


def get_when_ready(url: str, timeout: float = START_TIMEOUT) -> requests.Response:
    """GET `url`, retried while the server is not listening yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=30)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Upstream:
    """A plain HTTP/1.1 server (http.server, threads) on a free port, for the tests of
    reverse proxying: it records every request it gets (method, target, headers, body
    length and SHA-256) and answers by path:

    - `/stream`: a chunked response whose second piece waits for `release`;
    - `/slow`: waits for `release` before answering;
    - `/redirect`: 302 to `/base/next` on this upstream (an absolute URL);
    - `/missing`: a 404 page of its own;
    - `/quietclose`: the record, then the connection closed without warning;
    - `/hop`: a response with hop-by-hop fields beside an ordinary one;
    - anything else: the record of the request, as JSON.
    """

    def __init__(self):
        import hashlib
        import http.server
        import json

        self.requests: list[dict] = []
        self.release = threading.Event()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def read_body(self):
                digest = hashlib.sha256()
                length = 0
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            break
                        remaining = size
                        while remaining:
                            block = self.rfile.read(min(remaining, 1 << 20))
                            digest.update(block)
                            remaining -= len(block)
                            length += len(block)
                        self.rfile.readline()
                else:
                    remaining = int(self.headers.get("Content-Length", "0"))
                    while remaining:
                        block = self.rfile.read(min(remaining, 1 << 20))
                        if not block:
                            break
                        digest.update(block)
                        remaining -= len(block)
                        length += len(block)
                return length, digest.hexdigest()

            def answer(self):
                length, sha256 = self.read_body()
                record = {
                    "method": self.command,
                    "target": self.path,
                    "headers": [[name.lower(), value] for name, value in self.headers.items()],
                    "length": length,
                    "sha256": sha256,
                    "client_port": self.client_address[1],
                }
                upstream.requests.append(record)
                path = self.path.split("?")[0]
                if path.endswith("/stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.write(b"5\r\nfirst\r\n")
                    self.wfile.flush()
                    upstream.release.wait(30)
                    self.wfile.write(b"6\r\nsecond\r\n0\r\n\r\n")
                    return
                if path.endswith("/slow"):
                    upstream.release.wait(30)
                if path.endswith("/missing"):
                    page = b"the upstream's own 404"
                    self.send_response(404)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(page)))
                    self.end_headers()
                    self.wfile.write(page)
                    return
                if path.endswith("/redirect"):
                    self.send_response(302)
                    self.send_header("Location", f"{upstream.url}/base/next?a=1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = json.dumps(record).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if path.endswith("/hop"):
                    self.send_header("Connection", "X-Up-Secret")
                    self.send_header("X-Up-Secret", "1")
                    self.send_header("Keep-Alive", "timeout=5")
                    self.send_header("Proxy-Authenticate", "Basic")
                    self.send_header("X-Up", "kept")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
                if path.endswith("/quietclose"):
                    # Closed after the answer, without saying so in a Connection header.
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def upstream():
    """A running `Upstream`, stopped when the test ends."""
    server = Upstream()
    yield server
    server.stop()
