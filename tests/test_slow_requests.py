"""Issue 23: --slow-requests SECONDS: a request still running past it is logged once in
the error log with its request id, method, target, thread and Python stack."""

import re
from concurrent.futures import ThreadPoolExecutor

from conftest import APPS, run_ferrule, wait_until

APP = "slow_requests.wsgi"


def slow_lines(server):
    return [line for line in server.error_log().splitlines() if "slow request" in line]


def test_a_slow_request_is_logged_once_with_its_python_stack(
    ferrule_server, mode_options, tmp_path
):
    server = ferrule_server(APP, "--threads", "2", "--slow-requests", "0.3", *mode_options)
    assert server.get("/").text == "fast"
    first, second = tmp_path / "first", tmp_path / "second"
    with ThreadPoolExecutor(2) as pool:
        first_answer = pool.submit(server.get, f"/block?file={first}")
        wait_until(lambda: len(slow_lines(server)) == 1)
        # A second slow request, reported only after the watcher looked at the first
        # one again and again: the first is still running and still reported once.
        second_answer = pool.submit(server.get, f"/block?file={second}")
        wait_until(lambda: len(slow_lines(server)) == 2)
        first.unlink()
        second.unlink()
        first_id, second_id = first_answer.result().text, second_answer.result().text
    log = server.error_log()
    [first_line, second_line] = slow_lines(server)
    assert first_id in first_line and second_id in second_line
    assert f"'GET /block?file={first}'" in first_line
    assert "(--slow-requests 0.3)" in first_line
    assert re.search(r"still running after 0\.[3-9] s", first_line), first_line
    assert re.search(r"on thread ferrule-wsgi-[01];", first_line)
    assert "[wsgi:warn]" in first_line
    # The stack follows the line: the application's frames, innermost last.
    stack = log[log.index(first_line) :].split("\n", 12)[1:12]
    stack_text = "\n".join(stack)
    assert str(APPS / APP) in stack_text
    assert "in wait_for_marker_removal" in stack_text
    assert "in application" in stack_text
    assert stack_text.index("in application") < stack_text.index("in wait_for_marker_removal")
    assert not any("'GET /'" in line for line in slow_lines(server))


def test_slow_requests_needs_a_number_of_seconds():
    result = run_ferrule("start-server", str(APPS / APP), "--slow-requests", "soon")
    assert result.returncode == 2
    assert "--slow-requests" in result.stderr
    assert "'soon' is not a number of seconds" in result.stderr
