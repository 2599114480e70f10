"""Daemon mode (the default): the application runs in daemon processes behind the front
end; what happens when they die, are replaced, or are all busy."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import LoadLoop, run_ferrule, wait_until

APP = "daemon.wsgi"


def pid_of(response: requests.Response) -> int:
    assert response.status_code == 200, response.text
    return response.json()["pid"]


def daemon_pids(server) -> set[int]:
    return set(server.child_pids())


def test_requests_run_in_daemon_processes_not_the_front_end(ferrule_server):
    server = ferrule_server(APP, "--processes", "2", "--threads", "1")
    wait_until(lambda: len(daemon_pids(server)) == 2)
    assert server.process.pid not in daemon_pids(server)
    # Two requests at once on one-thread daemons: each daemon takes one.
    with ThreadPoolExecutor(2) as pool:
        pids = set(pool.map(lambda _: pid_of(server.get("/sleep?seconds=0.5")), range(2)))
    assert pids == daemon_pids(server)


def test_a_daemon_takes_requests_only_when_it_has_a_free_thread(ferrule_server):
    server = ferrule_server(APP, "--processes", "2", "--threads", "2")
    wait_until(lambda: len(daemon_pids(server)) == 2)
    with ThreadPoolExecutor(4) as pool:
        pids = list(pool.map(lambda _: pid_of(server.get("/sleep?seconds=1")), range(4)))
    # Four slow requests, four threads in all: two per process, none queued behind another.
    assert sorted(pids.count(pid) for pid in set(pids)) == [2, 2]


def test_killed_daemon_is_respawned_within_a_second_and_logged(ferrule_server):
    server = ferrule_server(APP)
    first = pid_of(server.get("/pid"))
    os.kill(first, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: daemon_pids(server) and first not in daemon_pids(server), timeout=5)
    assert time.monotonic() - killed_at < 1.0
    log = server.wait_for_log("starting a new one")
    assert f"daemon process 0 (pid {first}) was killed by signal 9 (SIGKILL)" in log
    assert pid_of(server.get("/pid")) != first
    assert server.process.poll() is None


@pytest.mark.parametrize(
    ("path", "how"),
    [
        ("/signal?name=SIGSEGV", "was killed by signal 11 (SIGSEGV"),
        ("/exit", "exited with status 1"),
    ],
)
def test_daemon_dying_mid_request_gives_502_and_says_why(ferrule_server, path, how):
    server = ferrule_server(APP)
    pid = pid_of(server.get("/pid"))
    response = server.get(path)
    assert response.status_code == 502
    log = server.wait_for_log("starting a new one")
    line = next(line for line in log.splitlines() if "starting a new one" in line)
    # Which process, of what, during which request, and that it was restarted.
    assert f"daemon process 0 (pid {pid}) {how}" in line
    assert f"while handling GET {path}" in line
    assert "Truncated or oversized response headers" not in log
    assert pid_of(server.get("/pid")) != pid


def test_requests_waiting_for_a_thread_survive_a_daemon_crash(ferrule_server):
    server = ferrule_server(APP, "--threads", "1")
    victim = pid_of(server.get("/pid"))
    with ThreadPoolExecutor(4) as pool:
        running = pool.submit(server.get, "/sleep?seconds=3")
        time.sleep(0.5)
        waiting = [pool.submit(server.get, "/pid") for _ in range(3)]
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        assert running.result().status_code == 502
        # The three queued requests were never handed to the dead process.
        assert all(pid_of(future.result()) != victim for future in waiting)


def test_app_that_fails_to_import_stops_startup_with_its_traceback(ferrule_server, tmp_path):
    script = tmp_path / "broken.wsgi"
    script.write_text("import no_such_module_anywhere\n")
    server = ferrule_server(script, "--log-to-terminal", wait=False)
    assert server.process.wait(30) == 3
    stderr = server.stderr()
    assert "ModuleNotFoundError: No module named 'no_such_module_anywhere'" in stderr
    # One attempt, not a respawn loop.
    assert stderr.count("ModuleNotFoundError") == 1


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGHUP])
def test_graceful_restart_under_load_drops_no_request(ferrule_server, signum):
    server = ferrule_server(APP, "--processes", "2", "--threads", "2")
    wait_until(lambda: len(daemon_pids(server)) == 2)
    before = daemon_pids(server)
    with LoadLoop(server.url + "/pid") as load:
        time.sleep(0.3)
        server.signal(signum)
        wait_until(lambda: not (daemon_pids(server) & before), timeout=30)
        wait_until(lambda: len(daemon_pids(server)) == 2, timeout=30)
        served_before = load.responses
        time.sleep(0.3)
    assert load.failures == []
    assert load.responses > served_before
    assert server.process.poll() is None


def test_in_flight_request_finishes_during_graceful_restart(ferrule_server):
    server = ferrule_server(APP, "--threads", "1")
    old = pid_of(server.get("/pid"))
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.get, "/sleep?seconds=2")
        time.sleep(0.5)
        server.signal(signal.SIGUSR1)
        assert pid_of(slow.result()) == old
    wait_until(lambda: old not in daemon_pids(server), timeout=10)
    assert pid_of(server.get("/pid")) != old


def test_sigterm_lets_the_request_in_progress_finish(ferrule_server):
    server = ferrule_server(APP)
    server.get("/pid")
    daemons = daemon_pids(server)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.get, "/sleep?seconds=1.5")
        time.sleep(0.5)
        server.signal(signal.SIGTERM)
        assert slow.result().status_code == 200
    assert server.process.wait(20) == 0
    for pid in daemons:
        wait_until(lambda pid=pid: not os.path.exists(f"/proc/{pid}"), timeout=5)


def test_maximum_requests_recycles_daemons_without_losing_requests(ferrule_server):
    server = ferrule_server(
        APP, "--maximum-requests", "5", "--processes", "2", "--threads", "2", "--log-level", "info"
    )
    wait_until(lambda: len(daemon_pids(server)) == 2)
    with LoadLoop(server.url + "/pid", clients=3) as load:
        # Two processes to start with, then at least three replacements served requests.
        wait_until(lambda: len(load.pids) >= 5, timeout=60)
    assert load.failures == []
    log = server.wait_for_log("reached --maximum-requests (5)")
    assert "replacing it" in log
    wait_until(lambda: len(daemon_pids(server)) == 2)


def test_queue_timeout_answers_503_when_every_thread_stays_busy(ferrule_server):
    server = ferrule_server(APP, "--threads", "1", "--queue-timeout", "1")
    server.get("/pid")
    with ThreadPoolExecutor(2) as pool:
        busy = pool.submit(server.get, "/sleep?seconds=3")
        time.sleep(0.3)
        started = time.monotonic()
        waiting = server.get("/pid")
        waited = time.monotonic() - started
        assert busy.result().status_code == 200
    assert waiting.status_code == 503
    assert 0.9 <= waited < 2.5
    assert "--queue-timeout (1 s)" in server.error_log()


def test_unread_request_body_does_not_confuse_the_next_request(ferrule_server, mode_options):
    # The application answers without reading 3 MiB of body: the server reads and drops
    # the rest, as Apache does, so the client can send it all and reuse the connection.
    server = ferrule_server(APP, *mode_options, "--threads", "1")
    session = requests.Session()
    big = b"x" * (3 * 1024 * 1024)
    first = session.post(server.url + "/pid", data=big, timeout=30)
    assert first.status_code == 200
    second = session.post(server.url + "/echo-length", data=b"abc", timeout=30)
    assert second.json()["length"] == 3


def test_client_leaving_mid_upload_frees_the_daemon_thread(ferrule_server):
    server = ferrule_server(APP, "--threads", "1")
    server.get("/pid")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"POST /echo-length HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
            + b"x" * 1000
        )
        time.sleep(0.3)
    # The only thread was reading that body; it must be free again.
    assert server.get("/pid", timeout=10).status_code == 200


def test_help_lists_the_daemon_options():
    help_text = run_ferrule("start-server", "--help").stdout
    for option in [
        "--maximum-requests",
        "--queue-timeout",
        "--request-timeout",
        "--startup-timeout",
        "--inactivity-timeout",
        "--graceful-timeout",
        "--restart-interval",
        "--cpu-time-limit",
        "--memory-limit",
        "--daemon-backlog",
    ]:
        assert option in help_text


def test_request_timeout_answers_504_and_replaces_the_process(ferrule_server):
    server = ferrule_server(APP, "--threads", "2", "--request-timeout", "1")
    stuck_pid = pid_of(server.get("/pid"))
    with ThreadPoolExecutor(2) as pool:
        stuck = pool.submit(server.get, "/sleep?seconds=30")
        time.sleep(0.5)
        # The process's other thread finishes its request (within the limit) after the
        # stuck one was given up on, while the process is being replaced.
        neighbour = pool.submit(server.get, "/sleep?seconds=0.9")
        started = time.monotonic()
        assert stuck.result().status_code == 504
        assert time.monotonic() - started < 3
        assert pid_of(neighbour.result()) == stuck_pid
    log = server.wait_for_log("--request-timeout (1 s)")
    assert f"(pid {stuck_pid}) ran GET /sleep?seconds=30 for longer than" in log
    wait_until(lambda: stuck_pid not in daemon_pids(server), timeout=30)
    assert pid_of(server.get("/pid")) != stuck_pid


def test_startup_timeout_kills_a_daemon_that_loads_too_slowly(ferrule_server, tmp_path):
    script = tmp_path / "slow.wsgi"
    script.write_text("import time\ntime.sleep(30)\napplication = None\n")
    server = ferrule_server(script, "--startup-timeout", "1")
    log = server.wait_for_log("within --startup-timeout (1 s); killing it", timeout=15)
    assert "daemon process 0 (pid" in log
    assert server.process.poll() is None


def test_inactivity_timeout_replaces_an_idle_daemon_once(ferrule_server):
    server = ferrule_server(APP, "--inactivity-timeout", "1", "--log-level", "info")
    first = pid_of(server.get("/pid"))
    wait_until(lambda: daemon_pids(server) and first not in daemon_pids(server), timeout=10)
    assert "had no request for --inactivity-timeout (1 s)" in server.error_log()
    # The fresh process served nothing yet: it is left alone while idle.
    (second,) = wait_until(lambda: daemon_pids(server) if len(daemon_pids(server)) == 1 else None)
    time.sleep(2)
    assert daemon_pids(server) == {second}


def test_restart_interval_replaces_daemons_periodically(ferrule_server):
    server = ferrule_server(APP, "--restart-interval", "1", "--log-level", "info")
    first = pid_of(server.get("/pid"))
    wait_until(lambda: daemon_pids(server) and first not in daemon_pids(server), timeout=10)
    assert "has run for --restart-interval (1 s)" in server.error_log()
    assert pid_of(server.get("/pid")) != first


def test_cpu_time_limit_replaces_the_daemon_after_its_request(ferrule_server):
    server = ferrule_server(APP, "--cpu-time-limit", "1", "--log-level", "info")
    first = pid_of(server.get("/pid"))
    # The request that crosses the limit still completes.
    assert pid_of(server.get("/burn?seconds=1.5")) == first
    wait_until(lambda: daemon_pids(server) and first not in daemon_pids(server), timeout=10)
    assert "its --cpu-time-limit" in server.error_log()


def test_memory_limit_replaces_a_daemon_that_grew_too_big(ferrule_server):
    limit = 150 * 1024 * 1024
    server = ferrule_server(APP, "--memory-limit", str(limit), "--log-level", "info")
    first = pid_of(server.get("/pid"))
    assert pid_of(server.get("/hog?mb=200")) == first
    wait_until(lambda: daemon_pids(server) and first not in daemon_pids(server), timeout=10)
    assert f"more than --memory-limit ({limit})" in server.error_log()


def test_graceful_timeout_bounds_how_long_a_retiring_daemon_may_take(ferrule_server):
    server = ferrule_server(APP, "--graceful-timeout", "1")
    old = pid_of(server.get("/pid"))
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.get, "/sleep?seconds=30")
        time.sleep(0.3)
        server.signal(signal.SIGUSR1)
        # Killed at the end of its grace period: the client learns it at once.
        assert slow.result().status_code == 502
    log = server.wait_for_log("--graceful-timeout (1 s); killing it")
    assert f"(pid {old})" in log


def test_banner_shows_the_daemon_settings(ferrule_server):
    server = ferrule_server(
        APP, "--request-timeout", "30", "--startup-timeout", "20", "--daemon-backlog", "64"
    )
    banner = server.stdout()
    assert "Request Timeout    : 30 (seconds)" in banner
    assert "Startup Timeout    : 20 (seconds)" in banner
    assert "Queue Backlog      : 64 (connections)" in banner


def test_eviction_timeout_bounds_a_daemon_replaced_by_a_restart_signal(ferrule_server, tmp_path):
    server = ferrule_server(APP, "--graceful-timeout", "30", "--eviction-timeout", "1")
    old = pid_of(server.get("/pid"))
    started = tmp_path / "started"
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.get, f"/sleep?seconds=30&started={started}")
        wait_until(started.exists)
        server.signal(signal.SIGUSR1)
        # Killed after --eviction-timeout, not --graceful-timeout: the client learns it.
        assert slow.result().status_code == 502
    log = server.wait_for_log("--eviction-timeout (1 s); killing it")
    assert f"(pid {old})" in log


def test_eviction_timeout_leaves_recycling_to_the_graceful_timeout(ferrule_server, tmp_path):
    server = ferrule_server(
        APP, "--graceful-timeout", "1", "--eviction-timeout", "30", "--maximum-requests", "2"
    )
    started = tmp_path / "started"
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.get, f"/sleep?seconds=30&started={started}")
        wait_until(started.exists)
        # The second request makes the daemon due for recycling; its slow one is cut
        # after --graceful-timeout.
        assert server.get("/pid").status_code == 200
        assert slow.result().status_code == 502
    assert "--graceful-timeout (1 s); killing it" in server.wait_for_log("killing it")


# --- Daemon details (issue 24) -----------------------------------------------------------


def test_ignore_activity_requests_leave_a_daemon_idle(ferrule_server):
    server = ferrule_server(
        APP, "--inactivity-timeout", "1", "--ignore-activity", "/health", "--log-level", "info"
    )
    first = pid_of(server.get("/pid"))
    # Health checks keep coming, yet the daemon counts as idle and is replaced.
    wait_until(lambda: pid_of(server.get("/health")) != first, timeout=15, interval=0.2)
    assert "had no request for --inactivity-timeout (1 s)" in server.error_log()


def test_deadlock_timeout_replaces_a_daemon_whose_gil_is_held(ferrule_server):
    server = ferrule_server(APP, "--deadlock-timeout", "2", "--threads", "2")
    first = pid_of(server.get("/pid"))
    started = time.monotonic()
    stuck = server.get("/hold-gil?seconds=60", timeout=30)
    assert stuck.status_code == 502
    assert time.monotonic() - started < 15
    log = server.wait_for_log("--deadlock-timeout 2 s")
    assert f"daemon process 0 (pid {first}): no thread could take Python's GIL" in log
    second = pid_of(server.get("/pid"))
    assert second != first


def test_socket_prefix_puts_the_daemon_socket_in_that_directory(ferrule_server, tmp_path):
    prefix = tmp_path / "sockets"
    prefix.mkdir()
    server = ferrule_server(APP, "--socket-prefix", str(prefix))
    assert server.get("/pid").status_code == 200
    folder = prefix / f"ferrule-{server.port}"
    sockets = list(folder.glob("daemon-*.sock"))
    assert [path.name for path in sockets] == [f"daemon-{server.process.pid}.sock"]
    assert sockets[0].is_socket()
    assert not list((server.server_root / "run").glob("*.sock"))
    server.stop()
    assert not list(folder.glob("*.sock"))


def test_a_server_root_too_long_for_a_socket_points_to_socket_prefix(tmp_path):
    root = tmp_path / ("r" * 60) / ("o" * 60)
    result = run_ferrule("start-server", f"tests/apps/{APP}", "--server-root", str(root))
    assert result.returncode == 1
    assert "give --socket-prefix a short directory" in result.stderr


def socket_buffers(pid: int) -> list[tuple[int, int]]:
    """(receive, send) buffer sizes of the UNIX sockets of process `pid`, as `ss` shows them."""
    output = subprocess.run(
        ["ss", "-x", "-m", "-p", "-a"], capture_output=True, text=True, check=True
    ).stdout
    sizes = []
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if f"pid={pid}," in line:
            # `ss` puts the memory figures on the socket's line, or the next when narrow.
            text = line + " " + (lines[index + 1] if index + 1 < len(lines) else "")
            match = re.search(r"rb(\d+),t\d+,tb(\d+)", text)
            if match:
                sizes.append((int(match.group(1)), int(match.group(2))))
    return sizes


def test_send_and_receive_buffer_sizes_apply_to_the_daemon_connections(ferrule_server):
    server = ferrule_server(
        APP, "--threads", "2", "--send-buffer-size", "300000", "--receive-buffer-size", "200000"
    )
    pid = pid_of(server.get("/pid"))
    # The kernel doubles what is asked, for its own bookkeeping.
    sized = wait_until(lambda: [s for s in socket_buffers(pid) if s == (400000, 600000)])
    assert len(sized) == 2  # one connection per daemon thread


@pytest.mark.parametrize(
    ("option", "warning"),
    [
        ("--response-flush-delay", "--response-flush-delay is ignored: the front end sends"),
    ],
)
def test_options_with_nothing_to_act_on_are_accepted_with_a_warning(
    ferrule_server, option, warning
):
    server = ferrule_server(APP, option, "5")
    assert server.get("/pid").status_code == 200
    assert warning in server.stderr()
