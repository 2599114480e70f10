"""Server processes: how many, what happens when one dies, and signals."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import requests

from conftest import APPS, wait_until


def pids_serving(server, attempts: int = 40) -> set[int]:
    """The distinct server process pids seen over several new connections."""
    pids = set()
    for _ in range(attempts):
        response = requests.get(server.url + "/", headers={"Connection": "close"}, timeout=30)
        pids.add(json.loads(response.text)["pid"])
    return pids


def test_processes_share_the_listener(ferrule_server):
    server = ferrule_server("environ.wsgi", "--embedded-mode", "--processes", "2")
    wait_until(lambda: len(server.child_pids()) == 2)
    children = set(server.child_pids())
    # Each process accepts from the shared socket; over many connections both serve.
    wait_until(lambda: pids_serving(server) == children, timeout=30)
    report = json.loads(server.get("/").text)
    assert report["environ"]["wsgi.multiprocess"] == "True"


def test_killed_process_is_replaced_and_logged(ferrule_server):
    server = ferrule_server("environ.wsgi", "--embedded-mode")
    first = json.loads(server.get("/").text)["pid"]
    assert server.child_pids() == [first]
    os.kill(first, signal.SIGKILL)
    log = server.wait_for_log("was killed by signal 9 (SIGKILL)")
    assert f"server process 0 (pid {first}) was killed by signal 9 (SIGKILL)" in log
    assert "starting a new one" in log
    second = json.loads(server.get("/").text)["pid"]
    assert second != first
    assert server.process.poll() is None


def test_sigterm_stops_the_server_and_its_processes(ferrule_server):
    server = ferrule_server("environ.wsgi", "--embedded-mode", "--processes", "2")
    wait_until(lambda: len(server.child_pids()) == 2)
    children = server.child_pids()
    server.signal(signal.SIGTERM)
    assert server.process.wait(20) == 0
    for pid in children:
        assert not _alive(pid)


def test_sigint_stops_the_server(ferrule_server):
    server = ferrule_server("environ.wsgi", "--embedded-mode")
    server.get("/")
    server.signal(signal.SIGINT)
    assert server.process.wait(20) == 0


def test_sighup_replaces_processes_without_refusing_requests(ferrule_server):
    server = ferrule_server("environ.wsgi", "--embedded-mode", "--processes", "2")
    wait_until(lambda: len(server.child_pids()) == 2)
    before = set(server.child_pids())
    failures = []
    done = threading.Event()

    def load():
        session = requests.Session()
        while not done.is_set():
            try:
                response = session.get(server.url + "/", timeout=30)
                if response.status_code != 200:
                    failures.append(response.status_code)
            except requests.RequestException as error:
                failures.append(repr(error))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        server.signal(signal.SIGHUP)
        wait_until(lambda: len(set(server.child_pids()) - before) == 2, timeout=30)
        wait_until(lambda: not (set(server.child_pids()) & before), timeout=30)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert server.process.poll() is None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "State:\tZ" not in status.read()
    except FileNotFoundError:
        return False


def test_window_resize_does_not_stop_a_foreground_server(ferrule_server):
    # mod_wsgi-express under a terminal stops on SIGWINCH (Apache's graceful stop);
    # resizing the terminal must not take the site down.
    server = ferrule_server("environ.wsgi", "--embedded-mode")
    # The port accepts (the supervisor holds it) before the server process exists.
    children = wait_until(server.child_pids)
    server.signal(signal.SIGWINCH)
    for pid in children:
        os.kill(pid, signal.SIGWINCH)
    assert server.get("/").status_code == 200
    assert server.process.poll() is None
    assert server.child_pids() == children


def test_process_name_names_the_server_process(ferrule_server):
    server = ferrule_server("environ.wsgi", "--process-name", "my-site-server-long-name")
    comm = Path(f"/proc/{server.process.pid}/comm").read_text().strip()
    # The kernel keeps the first 15 bytes of a process name.
    assert comm == "my-site-server-"


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def test_issue_15_processes_exit_when_the_supervisor_dies(ferrule_server, mode_options, tmp_path):
    # Issue 15: a server or daemon process whose supervisor was killed must not keep the
    # port served alone, nor linger with a request in progress (here for up to 30 s of
    # --shutdown-timeout).
    server = ferrule_server(
        "daemon.wsgi", *mode_options, "--processes", "2", "--shutdown-timeout", "30"
    )
    wait_until(lambda: len(server.child_pids()) == 2)
    children = server.child_pids()
    started = tmp_path / "started"
    slow = threading.Thread(
        target=lambda: _ignore_errors(
            server.get, f"/sleep?seconds=60&started={started}", timeout=90
        ),
        daemon=True,
    )
    slow.start()
    wait_until(started.exists)
    server.process.kill()
    server.process.wait(10)
    for pid in children:
        wait_until(lambda pid=pid: not _alive(pid), timeout=10)
    assert wait_until(lambda: _refused(server.port), timeout=10)
    slow.join()


def _ignore_errors(function, *args, **kwargs):
    try:
        function(*args, **kwargs)
    except requests.RequestException:
        pass


def test_issue_15_the_application_inherits_no_ferrule_variables_or_descriptors(
    ferrule_server, mode_options
):
    # Issue 15: the supervisor's variables are read
    # and removed before the application runs, so a `ferrule` that the application starts
    # is not mistaken for one of our processes; and no descriptor of ours (the listener,
    # a socket, a log) leaks into the application's subprocesses.
    server = ferrule_server("inherit.wsgi", *mode_options)
    report = server.get("/").json()
    for moment in ("at_import", "at_request"):
        assert report[moment] == {"environ": [], "descriptors": {}}, moment


def test_issue_15_a_file_being_sent_is_not_inherited(ferrule_server, mode_options, tmp_path):
    # Issue 15: the descriptor a `wsgi.file_wrapper` response is sent from must not leak
    # into a subprocess that another request starts meanwhile.
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (64 << 20))
    server = ferrule_server("inherit.wsgi", *mode_options, "--threads", "2")
    with socket.socket() as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(f"GET /file?path={big} HTTP/1.1\r\nHost: x\r\n\r\n".encode())

        def open_in_a_child():
            # The server's duplicate (the application's file is closed once duplicated),
            # held while the client does not read.
            return any(_open_count(pid, big) for pid in server.child_pids())

        wait_until(open_in_a_child)
        report = server.get("/").json()
    assert report["at_request"]["descriptors"] == {}


def _open_count(pid: int, path: Path) -> int:
    count = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                count += os.readlink(f"/proc/{pid}/fd/{fd}") == str(path)
            except OSError:
                pass
    except OSError:
        pass
    return count


def test_issue_15_a_bad_ferrule_variable_is_refused_by_name(tmp_path):
    # Issue 15: the supervisor's variables are checked, not trusted: a leftover or
    # mistyped one is an error naming it, not a process that takes itself for another.
    result = subprocess.run(
        [sys.executable, "-m", "ferrule", "setup-server", str(APPS / "daemon.wsgi"),
         "--server-root", str(tmp_path / "root")],
        env={**os.environ, "FERRULE_PROCESS_INDEX": "x", "FERRULE_DAEMON_SOCKET": "d.sock"},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "ferrule: error: FERRULE_DAEMON_SOCKET='d.sock': not an absolute path\n" in (
        result.stderr
    )
    assert "ferrule: error: FERRULE_PROCESS_INDEX='x': not a process slot number\n" in (
        result.stderr
    )
