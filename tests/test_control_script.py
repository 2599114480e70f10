"""`setup-server` and the control script it writes, SERVER_ROOT/apachectl: start, stop,
restart, graceful, graceful-stop and configtest, as mod_wsgi-express's script has them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import APPS, free_port, run_ferrule, wait_until


def apachectl(root: Path, *command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(root / "apachectl"), *command],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def daemon_pids(pid: int) -> set[int]:
    try:
        return set(map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split()))
    except FileNotFoundError:
        return set()


@pytest.fixture
def server_setup(tmp_path):
    """A server root made by `ferrule setup-server`; stopped (by pid) at the end."""
    port = free_port()
    root = tmp_path / "root"
    result = run_ferrule(
        "setup-server", str(APPS / "daemon.wsgi"), "--host", "127.0.0.1", "--port", str(port),
        "--server-root", str(root), "--processes", "2", "--threads", "2",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    yield root, f"http://127.0.0.1:{port}", result
    pid_file = root / "httpd.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        children = daemon_pids(pid)
        for process in [pid, *children]:
            try:
                os.kill(process, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_setup_server_writes_the_control_script_without_starting(server_setup):
    root, url, result = server_setup
    script = root / "apachectl"
    assert script.exists() and os.access(script, os.X_OK)
    assert f"Control Script     : {script}" in result.stdout
    assert "Operating Mode     : daemon" in result.stdout
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/pid", timeout=5)


def test_start_graceful_restart_and_stop(server_setup):
    root, url, _ = server_setup
    started = apachectl(root, "start")
    assert started.returncode == 0, started.stderr
    pid = int((root / "httpd.pid").read_text())
    assert requests.get(url + "/pid", timeout=30).status_code == 200
    assert "already running" in apachectl(root, "start").stdout

    before = daemon_pids(pid)
    assert apachectl(root, "graceful").returncode == 0
    wait_until(lambda: len(daemon_pids(pid)) == 2 and not (daemon_pids(pid) & before), 30)
    assert requests.get(url + "/pid", timeout=30).status_code == 200

    before = daemon_pids(pid)
    assert apachectl(root, "restart").returncode == 0
    wait_until(lambda: len(daemon_pids(pid)) == 2 and not (daemon_pids(pid) & before), 30)
    assert requests.get(url + "/pid", timeout=30).status_code == 200

    stopped = apachectl(root, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not alive(pid)
    assert not (root / "httpd.pid").exists()
    assert "not running" in apachectl(root, "stop").stdout


def test_graceful_stop_lets_the_request_in_progress_finish(server_setup):
    root, url, _ = server_setup
    assert apachectl(root, "start").returncode == 0
    pid = int((root / "httpd.pid").read_text())
    session = requests.Session()
    assert session.get(url + "/pid", timeout=30).status_code == 200
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(session.get, url + "/sleep?seconds=1.5", timeout=30)
        time.sleep(0.5)
        # Under the control script SIGWINCH is Apache's graceful stop.
        assert apachectl(root, "graceful-stop").returncode == 0
        assert slow.result().status_code == 200
    assert not alive(pid)


def test_configtest_checks_the_options_and_files(server_setup, tmp_path):
    root, _, _ = server_setup
    result = apachectl(root, "configtest")
    assert result.returncode == 0
    assert "Syntax OK" in result.stdout


def test_configtest_reports_a_missing_script(tmp_path):
    script = tmp_path / "app.wsgi"
    script.write_text((APPS / "daemon.wsgi").read_text())
    root = tmp_path / "root"
    assert run_ferrule("setup-server", str(script), "--server-root", str(root)).returncode == 0
    script.unlink()
    result = apachectl(root, "configtest")
    assert result.returncode == 2
    assert f"the WSGI script file '{script}' does not exist" in result.stderr


def test_start_server_setup_only_is_setup_server(tmp_path):
    root = tmp_path / "root"
    result = run_ferrule(
        "start-server", str(APPS / "daemon.wsgi"), "--server-root", str(root), "--setup-only"
    )
    assert result.returncode == 0
    assert (root / "apachectl").exists()
    assert "Control Script" in result.stdout


def test_start_server_writes_the_pid_file_and_control_script(ferrule_server):
    server = ferrule_server("daemon.wsgi", "--pid-file", "custom.pid")
    pid_file = Path(server.args[server.args.index("--server-root") + 1]).parent / "custom.pid"
    assert int(pid_file.read_text()) == server.process.pid
    assert (server.server_root / "apachectl").exists()
    server.signal(signal.SIGTERM)
    assert server.process.wait(20) == 0
    assert not pid_file.exists()


def test_second_server_with_the_same_pid_file_is_refused(ferrule_server):
    first = ferrule_server("daemon.wsgi")
    pid_file = str(first.server_root / "httpd.pid")
    second = ferrule_server("daemon.wsgi", "--pid-file", pid_file, "--log-to-terminal", wait=False)
    assert second.process.wait(30) == 1
    assert f"another server (pid {first.process.pid}) runs from this server root" in (
        second.stderr()
    )
    # The first one's pid file is left alone.
    assert int((first.server_root / "httpd.pid").read_text()) == first.process.pid


def unit_value(unit: str, key: str) -> str:
    return next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(key + "="))


def test_issue_23_systemd_unit_starts_reloads_and_drains(tmp_path):
    """`setup-server --systemd` writes SERVER_ROOT/ferrule.service. Without a systemd to
    run it here, the test runs what the unit says: its ExecStart, its reload signal, and
    its stop signal sent to the main process alone (KillMode=mixed)."""
    port = free_port()
    root = tmp_path / "root"
    result = run_ferrule(
        "setup-server", str(APPS / "daemon.wsgi"), "--host", "127.0.0.1", "--port", str(port),
        "--server-root", str(root), "--systemd", "--shutdown-timeout", "7",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    unit = (root / "ferrule.service").read_text()
    assert unit_value(unit, "Type") == "simple"
    assert unit_value(unit, "ExecStart") == f"{root / 'apachectl'} start -DFOREGROUND"
    assert unit_value(unit, "ExecReload") == "/bin/kill -USR1 $MAINPID"
    assert unit_value(unit, "KillSignal") == "SIGTERM"
    assert unit_value(unit, "KillMode") == "mixed"
    assert unit_value(unit, "TimeoutStopSec") == "17"
    assert "WantedBy=multi-user.target" in unit
    analyze = shutil.which("systemd-analyze")
    if analyze:
        verified = subprocess.run(
            [analyze, "verify", "--man=no", str(root / "ferrule.service")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert verified.returncode == 0, verified.stderr
        assert "ferrule.service" not in verified.stderr, verified.stderr
    server = subprocess.Popen(
        unit_value(unit, "ExecStart").split(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/pid"
        first = wait_until(lambda: _get_pid(url), timeout=30)
        # The exec'd server is the main process: the pid file names it.
        assert int((root / "httpd.pid").read_text()) == server.pid
        server.send_signal(signal.SIGUSR1)
        wait_until(lambda: (_get_pid(url) or first) != first, timeout=30)
        server.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _get_pid(url: str) -> int | None:
    try:
        return requests.get(url, timeout=5).json()["pid"]
    except requests.RequestException:
        return None
