"""Managed services (issue 24): `--service-script NAME SCRIPT` runs a Python script in a
process of its own, started with the server, started again when it dies (logged), and
stopped with the server, as mod_wsgi-express's service scripts; `--service-log-file` gives
it a log of its own. Run in both modes: the services are the supervisor's in either."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from conftest import run_ferrule, wait_until

SERVICE = """\
import os, pathlib, threading, time

here = pathlib.Path(__file__).parent
(here / f"started-{os.getpid()}").write_text(os.getcwd())
print("the worker service says hello", flush=True)


def beat():
    while True:
        (here / "heartbeat").write_text(str(time.time()))
        time.sleep(0.1)


# A daemon thread: it runs only as long as the process does after the script returned.
threading.Thread(target=beat, daemon=True).start()
"""


def write_service(tmp_path: Path, text: str = SERVICE) -> Path:
    folder = tmp_path / "service"
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "worker.py"
    script.write_text(text)
    return script


def started_pids(script: Path) -> list[int]:
    return sorted(int(path.name.split("-")[1]) for path in script.parent.glob("started-*"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie not yet reaped counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


def test_a_service_starts_with_the_server_and_keeps_running(ferrule_server, tmp_path, mode_options):
    script = write_service(tmp_path)
    server = ferrule_server(
        "environ.wsgi", *mode_options, "--service-script", "worker", str(script)
    )
    (pid,) = wait_until(lambda: started_pids(script))
    assert pid in server.child_pids()
    # It ran in the application's home directory, and its print() is in the error log.
    assert (script.parent / f"started-{pid}").read_text() == str(tmp_path)
    server.wait_for_log("the worker service says hello")
    # After the script returned, the process stays: the thread it started goes on.
    heartbeat = script.parent / "heartbeat"
    first = wait_until(lambda: heartbeat.exists() and heartbeat.read_text())
    wait_until(lambda: heartbeat.read_text() != first)
    assert server.get("/").status_code == 200


def test_a_service_that_dies_is_started_again_and_logged(ferrule_server, tmp_path):
    script = write_service(tmp_path)
    server = ferrule_server("environ.wsgi", "--service-script", "worker", str(script))
    (first,) = wait_until(lambda: started_pids(script))
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: [pid for pid in started_pids(script) if pid != first])
    assert alive(second[0])
    log = server.error_log()
    assert f"service 'worker' (pid {first}) was killed by signal 9 (SIGKILL)" in log
    assert "starting it again in 1 s" in log


def test_services_stop_with_the_server(ferrule_server, tmp_path, mode_options):
    script = write_service(tmp_path)
    other = write_service(tmp_path / "other")
    server = ferrule_server(
        "environ.wsgi",
        *mode_options,
        "--service-script", "worker", str(script),
        "--service-script", "other", str(other),
    )  # fmt: skip
    (worker,) = wait_until(lambda: started_pids(script))
    (second,) = wait_until(lambda: started_pids(other))
    assert server.stop() == 0
    assert not alive(worker)
    assert not alive(second)


def test_a_restart_signal_starts_each_service_again(ferrule_server, tmp_path):
    script = write_service(tmp_path)
    server = ferrule_server("environ.wsgi", "--service-script", "worker", str(script))
    (first,) = wait_until(lambda: started_pids(script))
    server.signal(signal.SIGHUP)
    (second,) = wait_until(lambda: [pid for pid in started_pids(script) if pid != first])
    wait_until(lambda: not alive(first))
    assert alive(second)
    # An expected exit, not a death to report.
    assert "starting it again" not in server.error_log()


def test_a_failing_service_script_is_logged_and_retried(ferrule_server, tmp_path):
    script = write_service(tmp_path, "raise RuntimeError('the queue is not there')\n")
    server = ferrule_server("environ.wsgi", "--service-script", "worker", str(script))
    log = server.wait_for_log("RuntimeError: the queue is not there")
    assert "service 'worker' failed" in log
    wait_until(lambda: server.error_log().count("RuntimeError: the queue is not there") >= 2)
    # The application is served all the same.
    assert server.get("/").status_code == 200


def test_service_log_file_takes_the_services_output(ferrule_server, tmp_path):
    script = write_service(tmp_path)
    server = ferrule_server(
        "environ.wsgi",
        "--service-script", "worker", str(script),
        "--service-log-file", "worker", "worker.log",
    )  # fmt: skip
    service_log = server.server_root / "worker.log"
    wait_until(
        lambda: service_log.exists() and "the worker service says hello" in service_log.read_text()
    )
    assert "the worker service says hello" not in server.error_log()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--service-script", "worker", "missing.py"], "--service-script worker names"),
        (
            ["--service-script", "worker", "WORKER", "--service-user", "worker", "nobody"],
            "--service-user worker cannot run as user 'nobody'",
        ),
        (
            ["--service-script", "worker", "WORKER", "--service-log-file", "other", "x.log"],
            "--service-log-file other is not a service of --service-script",
        ),
    ],
)
def test_bad_service_options_are_refused_by_name(tmp_path, arguments, message):
    script = write_service(tmp_path)
    arguments = [str(script) if argument == "WORKER" else argument for argument in arguments]
    result = run_ferrule(
        "start-server", "tests/apps/environ.wsgi", *arguments, "--server-root", str(tmp_path / "r")
    )
    assert result.returncode == 2
    assert message in result.stderr
