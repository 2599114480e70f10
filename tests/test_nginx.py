"""Issue 23: two instances behind a real nginx upstream (Debian's package), as
docs/operations.md shows. While a load loop runs through nginx, one instance is restarted
gracefully (SIGHUP) and the other stopped (SIGTERM) and started afresh on its port: no
request fails."""

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import APPS, START_TIMEOUT, LoadLoop, free_port, wait_until

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (make test installs Debian's nginx package)"
)

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream ferrule {{
        server 127.0.0.1:{first} max_fails=1 fail_timeout=2s;
        server 127.0.0.1:{second} max_fails=1 fail_timeout=2s;
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://ferrule;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 2;
        }}
    }}
}}
"""


def accepting(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Instance:
    """A ferrule server on a port of our choosing (so it can be started again on it)."""

    def __init__(self, tmp_path: Path, port: int, name: str):
        self.port = port
        self.server_root = tmp_path / f"root-{name}"
        self.log = tmp_path / f"stderr-{name}.txt"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ferrule",
                "start-server",
                str(APPS / "daemon.wsgi"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--server-root",
                str(self.server_root),
                "--threads",
                "4",
                "--health-check-path",
                "/healthz",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_until(lambda: accepting(self.port), START_TIMEOUT)

    def healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture
def instances(tmp_path):
    started = [Instance(tmp_path, free_port(), name) for name in ("a", "b")]
    yield started
    for instance in started:
        instance.stop()


def test_issue_23_rolling_restarts_behind_nginx_lose_no_request(tmp_path, instances):
    first, second = instances
    for instance in instances:
        instance.start()
        wait_until(instance.healthy, timeout=30)
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(root=tmp_path, first=first.port, second=second.port, port=port)
    )
    nginx = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "nginx-stderr.txt").open("wb"),
        start_new_session=True,
    )
    try:
        wait_until(lambda: accepting(port), timeout=15)
        with LoadLoop(f"http://127.0.0.1:{port}/pid", clients=4) as load:
            wait_until(lambda: len(load.pids) >= 2, timeout=20)
            # A graceful restart: new daemons take over, the port never closes.
            before = load.responses
            first.process.send_signal(signal.SIGHUP)
            pids_before = set(load.pids)
            wait_until(lambda: len(load.pids - pids_before) >= 1, timeout=30)
            # A stop and a fresh start on the same port.
            second.process.send_signal(signal.SIGTERM)
            assert second.process.wait(20) == 0
            wait_until(lambda: load.responses > before + 50, timeout=20)
            second.start()
            wait_until(second.healthy, timeout=30)
            served = load.responses
            wait_until(lambda: load.responses > served + 50, timeout=20)
        assert load.failures == [], load.failures[:5]
        assert load.responses > 100
    finally:
        nginx.send_signal(signal.SIGQUIT)
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(nginx.pid, signal.SIGKILL)
            nginx.wait()
