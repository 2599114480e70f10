"""--with-cgi: the executable .cgi files of the document root run as CGI scripts (RFC 3875),
without a shell, beside the WSGI application, in both modes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import APPS, host_readings, run_ferrule, wait_until

ENVIRON_CGI = """#!/usr/bin/env python3
import json, os, sys
body = sys.stdin.buffer.read()
print("Content-Type: application/json")
print("X-Script: environ")
print()
print(json.dumps({"environ": dict(os.environ), "body": body.decode("latin-1"),
                  "cwd": os.getcwd()}))
"""

STATUS_CGI = """#!/bin/sh
echo "Status: 404 Not Here"
echo "Content-Type: text/plain"
echo
echo "nothing at $PATH_INFO"
"""

LOCATION_CGI = """#!/bin/sh
printf 'Location: /moved/elsewhere\\r\\n\\r\\n'
"""

STDERR_CGI = """#!/bin/sh
echo "a complaint for the error log" >&2
printf 'Content-Type: text/plain\\n\\nfine\\n'
"""

HANGING_CGI = """#!/bin/sh
echo $$ > "$DOCUMENT_ROOT/../hanging.pid"
exec sleep 300
"""

BAD_CGI = """#!/bin/sh
echo "this is not a header"
"""


def make_site(tmp_path: Path) -> Path:
    root = tmp_path / "htdocs"
    (root / "bin").mkdir(parents=True)
    scripts = {
        "bin/environ.cgi": ENVIRON_CGI,
        "status.cgi": STATUS_CGI,
        "location.cgi": LOCATION_CGI,
        "stderr.cgi": STDERR_CGI,
        "hanging.cgi": HANGING_CGI,
        "bad.cgi": BAD_CGI,
    }
    for name, text in scripts.items():
        (root / name).write_text(text)
        (root / name).chmod(0o755)
    (root / "not-executable.cgi").write_text(STATUS_CGI)
    (root / "not-executable.cgi").chmod(0o644)
    return root


@pytest.fixture
def cgi_server(ferrule_server, mode_options, tmp_path):
    root = make_site(tmp_path)
    return ferrule_server(
        "environ.wsgi",
        *mode_options,
        "--document-root",
        str(root),
        "--with-cgi",
        "--request-timeout",
        "2",
    )


def test_a_script_gets_the_cgi_variables(cgi_server):
    response = cgi_server.get(
        "/bin/environ.cgi/more/path?a=1&b=two",
        headers={"X-Test": "from the client", "Cookie": "c=1"},
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Script"] == "environ"
    report = response.json()
    environ = report["environ"]
    assert environ["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["QUERY_STRING"] == "a=1&b=two"
    assert environ["SCRIPT_NAME"] == "/bin/environ.cgi"
    assert environ["PATH_INFO"] == "/more/path"
    assert environ["PATH_TRANSLATED"].endswith("/htdocs/more/path")
    assert environ["SCRIPT_FILENAME"].endswith("/htdocs/bin/environ.cgi")
    assert environ["SERVER_PORT"] == str(cgi_server.port)
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["HTTP_X_TEST"] == "from the client"
    assert environ["HTTP_COOKIE"] == "c=1"
    assert "CONTENT_LENGTH" not in environ
    # The CGI variables and PATH, nothing of the server's own environment.
    assert "HOME" not in environ
    assert "PATH" in environ
    # Run in its own directory.
    assert report["cwd"].endswith("/htdocs/bin")


def test_server_name_and_port_are_the_applications(cgi_server):
    """One reading of Host for a script and the WSGI application beside it, as under
    Apache, where both get `ap_get_server_name` and `ap_get_server_port`."""
    for host, name, port in host_readings(cgi_server.port):
        seen = [
            cgi_server.get(path, headers={"Host": host}).json()["environ"]
            for path in ("/bin/environ.cgi", "/application")
        ]
        assert [(e["SERVER_NAME"], e["SERVER_PORT"]) for e in seen] == [(name, port)] * 2, host
        assert seen[0]["HTTP_HOST"] == host


def test_the_request_body_is_the_scripts_stdin(cgi_server):
    body = "name=ferrule&" + "x" * 200_000
    response = cgi_server.post(
        "/bin/environ.cgi",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    report = response.json()
    assert report["body"] == body
    assert report["environ"]["CONTENT_LENGTH"] == str(len(body))
    assert report["environ"]["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert report["environ"]["REQUEST_METHOD"] == "POST"


def test_status_and_location_from_the_script(cgi_server):
    response = cgi_server.get("/status.cgi/x")
    assert response.status_code == 404
    assert response.reason == "Not Here"
    assert response.text == "nothing at /x\n"
    moved = cgi_server.get("/location.cgi", allow_redirects=False)
    assert moved.status_code == 302
    assert moved.headers["Location"] == "/moved/elsewhere"


def test_a_script_that_is_not_executable_is_refused(cgi_server):
    response = cgi_server.get("/not-executable.cgi")
    assert response.status_code == 403
    assert "nothing at" not in response.text


def test_stderr_goes_to_the_error_log(cgi_server):
    response = cgi_server.get("/stderr.cgi")
    assert response.status_code == 200
    assert response.text == "fine\n"
    log = cgi_server.wait_for_log("a complaint for the error log")
    line = next(line for line in log.splitlines() if "a complaint" in line)
    assert "stderr.cgi" in line
    assert "[cgi:error]" in line


def test_a_malformed_answer_is_a_502(cgi_server):
    response = cgi_server.get("/bad.cgi")
    assert response.status_code == 502
    cgi_server.wait_for_log("bad.cgi")


def test_a_hanging_script_is_killed_after_the_request_timeout(cgi_server, tmp_path):
    response = cgi_server.get("/hanging.cgi")
    assert response.status_code == 504
    pid = int((tmp_path / "hanging.pid").read_text())

    def gone():
        try:
            return "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        except FileNotFoundError:
            return True

    wait_until(gone, timeout=10)
    cgi_server.wait_for_log("ran longer than --request-timeout (2 seconds) and was killed")


def test_the_application_is_served_beside_the_scripts(cgi_server):
    response = cgi_server.get("/application/path")
    assert response.status_code == 200
    assert response.json()["environ"]["PATH_INFO"] == "/application/path"
    # Without --with-php5, a .php name is only a name.
    assert cgi_server.get("/page.php").json()["environ"]["PATH_INFO"] == "/page.php"


def test_without_with_cgi_a_script_is_a_static_file(ferrule_server, tmp_path):
    root = make_site(tmp_path)
    server = ferrule_server("environ.wsgi", "--document-root", str(root))
    response = server.get("/status.cgi")
    assert response.status_code == 200
    assert response.text == STATUS_CGI


def test_cgi_needs_a_document_root(tmp_path):
    result = run_ferrule("start-server", str(APPS / "environ.wsgi"), "--with-cgi", cwd=tmp_path)
    assert result.returncode == 2
    assert "--with-cgi needs --document-root" in result.stderr


def test_scripts_run_without_a_shell(cgi_server, tmp_path):
    """A name with shell syntax in it is only a file name."""
    root = tmp_path / "htdocs"
    name = "a;touch pwned.cgi"
    (root / name).write_text(STATUS_CGI)
    (root / name).chmod(0o755)
    response = cgi_server.get("/a%3Btouch%20pwned.cgi")
    assert response.status_code == 404
    assert not (root / "pwned.cgi").exists()
    assert not Path("pwned.cgi").exists()
    assert json.dumps(os.listdir(root)).count("pwned") == 1
