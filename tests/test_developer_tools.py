"""The developer tools of --debug-mode (issue 24), as mod_wsgi-express has them: post-mortem
pdb and the start-up prompt (driven on a real terminal with pexpect), coverage.py's HTML
report, cProfile's data and the request recorder's files (read after real requests), and
gdb catching a crash. Each --enable-* option turns debug mode on by itself. Debug mode is
one process that serves and runs the application, so there is no daemon or embedded
variant of these tests."""

from __future__ import annotations

import ast
import os
import pstats
import re
import subprocess
import sys
import threading

import coverage
import pexpect
import requests

from conftest import get_when_ready, run_ferrule, start_on_terminal

APP = """\
import helper

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/fail":
        failing_value = 42
        raise RuntimeError("failed on purpose")
    if path == "/crash":
        import ctypes
        ctypes.string_at(0)
    body = environ["wsgi.input"].read()
    answer = helper.answer(path, body)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [answer]
"""

HELPER = """\
def answer(path, body):
    return b"answer for " + path.encode() + b" " + body
"""

BREAKPOINT_LINE = APP.splitlines().index('    body = environ["wsgi.input"].read()') + 1


def write_app(tmp_path):
    (tmp_path / "helper.py").write_text(HELPER)
    script = tmp_path / "tools.wsgi"
    script.write_text(APP)
    return script


def get_in_background(url: str) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def get():
        try:
            result["response"] = requests.get(url, timeout=60)
        except requests.RequestException as error:
            result["error"] = error

    client = threading.Thread(target=get)
    client.start()
    return client, result


def test_enable_debugger_stops_in_pdb_after_an_exception(tmp_path):
    child, url = start_on_terminal(tmp_path, write_app(tmp_path), "--enable-debugger")
    try:
        # No --debug-mode given: the debugger turns it on.
        child.expect("Operating Mode     : debug")
        assert get_when_ready(url + "/ok").text == "answer for /ok "
        client, result = get_in_background(url + "/fail")
        child.expect_exact("(Pdb)")
        # The prompt is in the frame that raised, with its variables.
        child.sendline("p failing_value")
        child.expect_exact("42")
        child.sendline("c")
        client.join(30)
        assert result["response"].status_code == 500
        # The server goes on serving after the post-mortem.
        assert requests.get(url + "/again", timeout=30).text == "answer for /again "
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_debugger_startup_prompts_before_serving_and_keeps_breakpoints(tmp_path):
    script = write_app(tmp_path)
    child, url = start_on_terminal(tmp_path, script, "--enable-debugger", "--debugger-startup")
    try:
        child.expect("Operating Mode     : debug")
        child.expect_exact("(Pdb)")
        child.sendline(f"b {script}:{BREAKPOINT_LINE}")
        child.expect("Breakpoint 1 at")
        child.sendline("c")
        client, result = get_in_background(url + "/stop-here")
        child.expect_exact("(Pdb)")
        child.sendline("p path")
        child.expect_exact("'/stop-here'")
        child.sendline("c")
        client.join(30)
        assert result["response"].text == "answer for /stop-here "
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_enable_coverage_writes_the_html_report_when_the_server_stops(ferrule_server, tmp_path):
    server = ferrule_server(write_app(tmp_path), "--enable-coverage", cwd=tmp_path)
    assert server.get("/measured").text == "answer for /measured "
    report = server.server_root / "htmlcov"
    assert f"Coverage Output    : {report}/index.html" in server.stdout()
    assert not (report / "index.html").exists()
    assert server.stop() == 0
    index = (report / "index.html").read_text()
    assert "helper.py" in index
    assert "tools.wsgi" in index
    # The request ran on the application thread, and was measured there: the helper's
    # body ran only during the request.
    data = coverage.CoverageData(basename=str(report / ".coverage"))
    data.read()
    helper = next(name for name in data.measured_files() if name.endswith("helper.py"))
    assert 2 in data.lines(helper)
    # Ferrule's own wrappers are not in the report.
    assert not any("_devtools" in name for name in data.measured_files())


def test_enable_coverage_without_the_package_is_a_start_up_error(tmp_path):
    # A Python whose `import coverage` fails, as where the package is not installed.
    shadow = tmp_path / "shadow" / "coverage"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named coverage')\n")
    script = write_app(tmp_path)
    result = run_ferrule_with_path(tmp_path, shadow.parent, script)
    assert result.returncode == 2, result.stderr
    assert "--enable-coverage needs the Python package 'coverage'" in result.stderr
    assert "pip install coverage" in result.stderr


def run_ferrule_with_path(tmp_path, directory, script):
    return subprocess.run(
        [sys.executable, "-m", "ferrule", "start-server", str(script), "--enable-coverage"]
        + ["--server-root", str(tmp_path / "root"), "--port", "0"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(directory)},
    )


def test_enable_profiler_writes_cprofile_data_when_the_server_stops(ferrule_server, tmp_path):
    server = ferrule_server(write_app(tmp_path), "--enable-profiler")
    assert server.get("/profiled").status_code == 200
    pid = server.process.pid
    assert server.stop() == 0
    files = list((server.server_root / "pstats").iterdir())
    assert len(files) == 1
    assert re.fullmatch(rf"\d+-{pid}\.pstats", files[0].name)
    stats = pstats.Stats(str(files[0]))
    functions = {(name, function) for (name, _, function) in stats.stats}
    # The request was profiled on the application thread.
    assert any(name.endswith("helper.py") and function == "answer" for name, function in functions)


def test_enable_recorder_writes_each_request_and_response(ferrule_server, tmp_path):
    records = tmp_path / "records"
    server = ferrule_server(
        write_app(tmp_path), "--enable-recorder", "--recorder-directory", str(records)
    )
    response = server.post("/echo", data=b"request body")
    assert response.text == "answer for /echo request body"
    assert server.get("/fail").status_code == 500
    keys = sorted({path.name.split(".")[0] for path in records.iterdir()})
    assert len(keys) == 2
    pid = server.process.pid
    assert [key.split("-")[1:] for key in keys] == [[str(pid), "1"], [str(pid), "2"]]
    first = records / keys[0]
    environ = ast.literal_eval(
        re.sub(r"<[^<>]*>", "None", first.with_suffix(".iheaders").read_text())
    )
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/echo"
    assert first.with_suffix(".icontent").read_bytes() == b"request body"
    status, headers = ast.literal_eval(first.with_suffix(".oheaders").read_text())
    assert status == "200 OK"
    assert headers == [("Content-Type", "text/plain")]
    assert first.with_suffix(".ocontent").read_bytes() == b"answer for /echo request body"
    second = records / keys[1]
    assert "RuntimeError: failed on purpose" in second.with_suffix(".oaexcept").read_text()


def test_enable_gdb_runs_the_server_under_gdb(tmp_path):
    child, url = start_on_terminal(tmp_path, write_app(tmp_path), "--enable-gdb", timeout=60)
    try:
        child.expect("Operating Mode     : debug")
        assert get_when_ready(url + "/ok").text == "answer for /ok "
        client, result = get_in_background(url + "/crash")
        child.expect("SIGSEGV")
        child.expect_exact("(gdb)")
        child.sendline("bt 1")
        child.expect(r"#0 ")
        # Stopped at gdb's prompt, the process still holds the connection: the client
        # learns of the crash when gdb kills it.
        assert client.is_alive()
        child.sendline("kill")
        child.expect_exact("(y or n)")
        child.sendline("y")
        child.expect_exact("(gdb)")
        client.join(30)
        assert "error" in result
        child.sendline("quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


def test_a_missing_gdb_is_refused_at_start_up(tmp_path):
    result = run_ferrule(
        "start-server",
        str(write_app(tmp_path)),
        "--enable-gdb",
        "--gdb-executable",
        "/nonexistent/gdb",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "--gdb-executable '/nonexistent/gdb' was not found" in result.stderr
