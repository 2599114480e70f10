"""`--interrupt-timeout` (mod_wsgi 6, daemon mode): a request past `--request-timeout`
gets RequestTimeout raised in its thread; one that unwinds is answered 504 by its own
process, which goes on serving; one that does not (stuck in a C call) has its process
replaced once `--interrupt-timeout` has passed too."""

from __future__ import annotations

import time

import requests

from conftest import run_ferrule, wait_until

APP = "daemon.wsgi"


def pid_of(response: requests.Response) -> int:
    assert response.status_code == 200, response.text
    return response.json()["pid"]


def test_python_code_past_the_request_timeout_is_interrupted_and_the_process_kept(
    ferrule_server,
):
    server = ferrule_server(
        APP, "--threads", "1", "--request-timeout", "1", "--interrupt-timeout", "10"
    )
    pid = pid_of(server.get("/pid"))
    started = time.monotonic()
    response = server.get("/loop?seconds=30")
    # Answered by the daemon once the exception unwound the request, long before the
    # front end would give up on it (request + interrupt timeout: 11 s).
    assert response.status_code == 504
    assert "request timeout" in response.text
    assert time.monotonic() - started < 8
    log = server.wait_for_log("was interrupted by RequestTimeout")
    assert "/loop unwound by ferrule.RequestTimeout (mod_wsgi.RequestTimeout: True)" in log
    line = next(line for line in log.splitlines() if "was interrupted by RequestTimeout" in line)
    assert "(GET /loop?seconds=30) on application thread 0" in line
    assert "answered 504" in line
    raised = next(line for line in log.splitlines() if "raised RequestTimeout in it" in line)
    assert "ran for longer than --request-timeout (1 s) on application thread 0" in raised
    # The request id is named: the same one in both lines.
    request_id = line.split("request ", 1)[1].split(" ", 1)[0]
    assert f"request {request_id} (GET /loop?seconds=30)" in raised
    # The only thread serves again, in the same process, which is not replaced.
    assert pid_of(server.get("/pid")) == pid
    assert pid_of(server.get("/sleep?seconds=0.2")) == pid
    assert "replacing the process" not in server.error_log()
    assert set(server.child_pids()) == {pid}


def test_a_request_stuck_in_a_c_call_has_its_process_replaced_after_both_timeouts(
    ferrule_server,
):
    server = ferrule_server(
        APP, "--threads", "2", "--request-timeout", "1", "--interrupt-timeout", "2"
    )
    stuck_pid = pid_of(server.get("/pid"))
    started = time.monotonic()
    # time.sleep(60) is one C call: the exception waits for it to return.
    response = server.get("/sleep?seconds=60")
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert 3 <= elapsed < 8
    log = server.wait_for_log("replacing the process")
    assert "raised RequestTimeout in it" in log
    assert (
        f"(pid {stuck_pid}) ran GET /sleep?seconds=60 for longer than --request-timeout (1 s)"
        " and --interrupt-timeout (2 s)" in log
    )
    wait_until(lambda: stuck_pid not in server.child_pids(), timeout=30)
    assert pid_of(server.get("/pid")) != stuck_pid


def test_without_interrupt_timeout_the_process_is_replaced_at_the_request_timeout(
    ferrule_server,
):
    # 0, the default: no exception; the front end answers 504 at once.
    server = ferrule_server(APP, "--request-timeout", "1", "--interrupt-timeout", "0")
    pid = pid_of(server.get("/pid"))
    started = time.monotonic()
    assert server.get("/loop?seconds=30").status_code == 504
    assert time.monotonic() - started < 3
    log = server.wait_for_log("replacing the process")
    assert "RequestTimeout" not in log
    wait_until(lambda: pid not in server.child_pids(), timeout=30)


def test_embedded_mode_has_no_request_timeout_to_interrupt(ferrule_server):
    # As mod_wsgi: the request timeout and its interruption are daemon-mode features.
    server = ferrule_server(
        APP, "--embedded-mode", "--request-timeout", "1", "--interrupt-timeout", "1"
    )
    response = server.get("/loop?seconds=2.5")
    assert response.status_code == 200
    assert "RequestTimeout" not in server.error_log()


def test_a_bad_interrupt_timeout_is_refused_naming_the_option():
    result = run_ferrule("start-server", "daemon.wsgi", "--interrupt-timeout", "soon")
    assert result.returncode == 2
    assert "--interrupt-timeout" in result.stderr
