"""Server processes: how many, what happens when one dies, and signals."""

import json
import os
import signal
import threading
from pathlib import Path

import requests

from conftest import wait_until


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
    children = server.child_pids()
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
