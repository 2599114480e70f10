"""Start-up: serving, the banner, the command line and its errors."""

import re

from conftest import APPS, run_ferrule, wait_until


def test_hello_is_served_with_the_banner(ferrule_server):
    server = ferrule_server("environ.wsgi", "--embedded-mode")
    response = server.get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    banner = server.stdout()
    assert f"Server URL         : http://127.0.0.1:{server.port}/" in banner
    assert f"Server Root        : {server.server_root}" in banner
    assert "Operating Mode     : embedded" in banner
    assert "Request Capacity   : 5 (1 process * 5 threads)" in banner


def test_daemon_mode_is_the_default(ferrule_server):
    server = ferrule_server("environ.wsgi", "--processes", "2", "--threads", "3")
    assert server.get("/").status_code == 200
    banner = server.stdout()
    assert "Operating Mode     : daemon" in banner
    assert "Request Capacity   : 6 (2 processes * 3 threads)" in banner
    assert "Queue Timeout      : 45 (seconds)" in banner


def test_help_lists_every_option():
    result = run_ferrule("start-server", "--help")
    assert result.returncode == 0
    for option in [
        "--port",
        "--host",
        "--processes",
        "--threads",
        "--embedded-mode",
        "--callable-object",
        "--working-directory",
        "--python-path",
        "--server-root",
        "--log-to-terminal",
        "--log-level",
        "--access-log",
        "--startup-log",
        "--ssl-port",
    ]:
        assert option in result.stdout


def test_every_problem_is_reported_at_once(tmp_path):
    missing = tmp_path / "missing.wsgi"
    result = run_ferrule(
        "start-server",
        str(missing),
        "--working-directory",
        str(tmp_path / "nowhere"),
        "--proxy-mount-point",
        "api",
        "http://127.0.0.1:1/",
    )
    assert result.returncode == 2
    assert f"the WSGI script file '{missing}' does not exist" in result.stderr
    assert (
        f"--working-directory '{tmp_path / 'nowhere'}' is not an existing directory"
        in result.stderr
    )
    assert "--proxy-mount-point 'api http://127.0.0.1:1/': the URL path must start with /" in (
        result.stderr
    )


def test_bad_value_names_the_option():
    result = run_ferrule("start-server", str(APPS / "environ.wsgi"), "--threads", "zero")
    assert result.returncode == 2
    assert "--threads" in result.stderr


def test_application_that_fails_to_import_stops_start_up(ferrule_server, tmp_path):
    broken = tmp_path / "broken.wsgi"
    broken.write_text("import does_not_exist\n")
    server = ferrule_server(broken, "--embedded-mode", wait=False)
    assert server.process.wait(30) == 3
    log = server.error_log()
    assert "ModuleNotFoundError: No module named 'does_not_exist'" in log
    assert "the WSGI application failed to load" in server.stderr()


def test_missing_callable_is_named(ferrule_server, tmp_path):
    script = tmp_path / "nocallable.wsgi"
    script.write_text("app = None\n")
    server = ferrule_server(script, "--embedded-mode", wait=False)
    assert server.process.wait(30) == 3
    assert "defines no callable named 'application'" in server.error_log()


def test_working_directory_is_the_cwd_and_on_the_module_path(ferrule_server, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "helper_module.py").write_text("GREETING = 'from the working directory'\n")
    script = tmp_path / "uses_helper.wsgi"
    script.write_text(
        "import os\n"
        "import helper_module\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [(helper_module.GREETING + '|' + os.getcwd()).encode()]\n"
    )
    server = ferrule_server(script, "--embedded-mode", "--working-directory", str(project))
    assert server.get("/").text == f"from the working directory|{project}"


def test_python_path_adds_module_directories(ferrule_server, tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    (library / "extra_module.py").write_text("VALUE = 'extra'\n")
    script = tmp_path / "uses_extra.wsgi"
    script.write_text(
        "import extra_module\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [extra_module.VALUE.encode()]\n"
    )
    server = ferrule_server(script, "--embedded-mode", "--python-path", str(library))
    assert server.get("/").text == "extra"


def test_callable_object_names_the_callable(ferrule_server, tmp_path):
    script = tmp_path / "named.wsgi"
    script.write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'named callable']\n"
    )
    server = ferrule_server(script, "--embedded-mode", "--callable-object", "app")
    assert server.get("/").text == "named callable"


def test_access_log_records_requests_in_common_format(ferrule_server):
    server = ferrule_server("environ.wsgi", "--embedded-mode", "--access-log")
    body = server.get("/logged?x=1").content
    access_log = server.server_root / "access_log"
    line = wait_until(lambda: access_log.exists() and access_log.read_text().strip())
    pattern = (
        r"^127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
        r'"GET /logged\?x=1 HTTP/1\.1" 200 ' + str(len(body)) + "$"
    )
    assert re.match(pattern, line), line
    assert f"Access Log File    : {access_log}" in server.stdout()


def test_startup_log_keeps_the_banner(ferrule_server):
    server = ferrule_server("environ.wsgi", "--embedded-mode", "--startup-log")
    startup_log = server.server_root / "startup_log"
    assert "Server URL" in startup_log.read_text()


def test_log_level_filters_the_error_log(ferrule_server, tmp_path):
    script = tmp_path / "prints.wsgi"
    script.write_text(
        "def application(environ, start_response):\n"
        "    print('printed by the application')\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
    )
    server = ferrule_server(script, "--embedded-mode", "--log-level", "crit")
    assert server.get("/").text == "ok"
    quiet = ferrule_server(script, "--embedded-mode")
    assert quiet.get("/").text == "ok"
    quiet.wait_for_log("printed by the application")
    assert "printed by the application" not in server.error_log()
