"""The WSGI environ as the application sees it, through a real socket and real clients.

Most tests use `requests`; where the exact bytes on the wire matter (duplicate headers,
header names `requests` would not send, non-ASCII header bytes, HTTP/1.0, the raw request
target) the request is written by hand on a plain socket and the response is parsed by
`http.client`.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import shlex
import socket
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import requests

from conftest import APPS, host_readings, run_ferrule


@pytest.fixture
def server(ferrule_server, mode_options):
    """One embedded-mode server running environ.wsgi with the default options."""
    return ferrule_server("environ.wsgi", *mode_options)


def report_of(response) -> dict:
    assert response.status_code == 200, response.text
    return json.loads(response.text)


def environ_of(response) -> dict:
    return report_of(response)["environ"]


def raw_exchange(port: int, request: bytes) -> tuple[dict, tuple[str, int]]:
    """Writes `request` byte for byte on a new connection; returns the app's report and
    the client end of the connection (address, port)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        client_address = sock.getsockname()
        sock.sendall(request)
        response = http.client.HTTPResponse(sock, method=request.split(b" ", 1)[0].decode())
        response.begin()
        body = response.read()
        assert response.status == 200, body
    return json.loads(body), client_address


def raw_environ(port: int, request: bytes) -> dict:
    return raw_exchange(port, request)[0]["environ"]


def raw_get(port: int, target: bytes = b"/", *header_lines: bytes) -> dict:
    """A hand-written `GET target HTTP/1.1` with a Host header and the given lines."""
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1:%d" % port, *header_lines]
    request = b"\r\n".join([*lines, b"Connection: close", b"", b""])
    return raw_environ(port, request)


# --- The request line -------------------------------------------------------------------


def test_request_method_is_the_method_sent(server):
    assert environ_of(server.get("/"))["REQUEST_METHOD"] == "GET"
    assert environ_of(server.post("/", data=b"x"))["REQUEST_METHOD"] == "POST"
    put = requests.put(server.url + "/", data=b"x", timeout=30)
    assert environ_of(put)["REQUEST_METHOD"] == "PUT"
    delete = requests.delete(server.url + "/", timeout=30)
    assert environ_of(delete)["REQUEST_METHOD"] == "DELETE"


def test_script_name_is_empty_at_the_root(server):
    environ = environ_of(server.get("/some/path"))
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/some/path"


def test_path_info_is_percent_decoded_as_latin1(server):
    environ = environ_of(server.get("/a%20b/%C3%A9"))
    # The UTF-8 bytes of 'é' arrive as two latin-1 characters, as PEP 3333 asks.
    assert environ["PATH_INFO"] == "/a b/\xc3\xa9"
    assert environ["PATH_INFO"] == "/a b/Ã©"


def test_query_string_keeps_malformed_escapes(server):
    # Only the path is decoded (a bad escape there is a 400, see test_http.py); the query
    # reaches the application as sent.
    environ = raw_get(server.port, b"/x?a=%zz&b=%2")
    assert environ["QUERY_STRING"] == "a=%zz&b=%2"
    assert environ["REQUEST_URI"] == "/x?a=%zz&b=%2"


def test_query_string_is_passed_raw(server):
    environ = raw_get(server.port, b"/p?a=1&b=%20x+y&c=%2F&d")
    assert environ["QUERY_STRING"] == "a=1&b=%20x+y&c=%2F&d"
    assert environ["PATH_INFO"] == "/p"


def test_query_string_is_empty_without_a_query(server):
    assert environ_of(server.get("/p"))["QUERY_STRING"] == ""


def test_request_uri_is_the_path_and_query_as_sent(server):
    environ = raw_get(server.port, b"/a%20b/%C3%A9?q=%20x+y&r")
    assert environ["REQUEST_URI"] == "/a%20b/%C3%A9?q=%20x+y&r"
    assert environ["PATH_INFO"] == "/a b/Ã©"


def test_issue_17_raw_non_ascii_bytes_in_the_target_are_refused(server):
    # RFC 9112 3.2 and RFC 3986 2: a target is ASCII, anything else percent-encoded
    # (browsers do). mod_wsgi passes raw bytes on as latin-1; the RFC wins (docs/http.md).
    request = b"GET /caf\xc3\xa9?q=\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock, method="GET")
        response.begin()
        body = response.read()
        assert response.status == 400
        assert b"percent-encoded" in body
        assert response.getheader("Connection") == "close"
        assert sock.recv(1) == b""


def test_issue_15_absolute_form_target_names_the_host(server):
    # RFC 9112 3.2.2: the authority of an absolute-form target replaces the Host header.
    request = (
        b"GET http://other.example:8080/x/y?z=1 HTTP/1.1\r\n"
        b"Host: 127.0.0.1:%d\r\nConnection: close\r\n\r\n" % server.port
    )
    environ = raw_environ(server.port, request)
    assert environ["REQUEST_URI"] == "http://other.example:8080/x/y?z=1"
    assert environ["HTTP_HOST"] == "other.example:8080"
    assert environ["SERVER_NAME"] == "other.example"
    assert environ["SERVER_PORT"] == "8080"
    assert environ["PATH_INFO"] == "/x/y"
    assert environ["QUERY_STRING"] == "z=1"


def test_server_protocol_http_1_1(server):
    assert environ_of(server.get("/"))["SERVER_PROTOCOL"] == "HTTP/1.1"


def test_server_protocol_http_1_0(server):
    request = b"GET / HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n" % server.port
    assert raw_environ(server.port, request)["SERVER_PROTOCOL"] == "HTTP/1.0"


# --- The body ---------------------------------------------------------------------------


def test_content_type_is_the_content_type_header(server):
    response = server.post("/", data=b"a=1", headers={"Content-Type": "text/plain; charset=utf-8"})
    environ = environ_of(response)
    assert environ["CONTENT_TYPE"] == "text/plain; charset=utf-8"
    assert "HTTP_CONTENT_TYPE" not in environ


def test_content_length_is_present_for_a_post_with_a_body(server):
    response = server.post("/", data=b"hello world")
    report = report_of(response)
    assert report["environ"]["CONTENT_LENGTH"] == "11"
    assert "HTTP_CONTENT_LENGTH" not in report["environ"]
    assert base64.b64decode(report["body"]) == b"hello world"


def test_content_length_is_absent_for_a_get_without_a_body(server):
    environ = raw_get(server.port, b"/")
    assert "CONTENT_LENGTH" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert "CONTENT_TYPE" not in environ


# --- Server and remote addresses --------------------------------------------------------


def test_server_name_and_port_come_from_the_host_header(server):
    environ = environ_of(server.get("/", headers={"Host": "example.com:8123"}))
    assert environ["SERVER_NAME"] == "example.com"
    assert environ["SERVER_PORT"] == "8123"
    assert environ["HTTP_HOST"] == "example.com:8123"


def test_server_port_is_the_connection_port_when_host_has_none(server):
    environ = environ_of(server.get("/", headers={"Host": "example.com"}))
    assert environ["SERVER_NAME"] == "example.com"
    assert environ["SERVER_PORT"] == str(server.port)


def test_server_name_and_port_read_host_as_apache_does(server):
    for host, name, port in host_readings(server.port):
        environ = environ_of(server.get("/", headers={"Host": host}))
        assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (name, port), host
        assert environ["HTTP_HOST"] == host


def test_the_documented_server_name_example(ferrule_server, mode_options, tmp_path):
    """docs/http.md's SERVER_NAME example, its commands run as written (the port is ours)."""
    page = (Path(__file__).parent.parent / "docs" / "http.md").read_text()
    blocks = [textwrap.dedent(block) for block in re.findall(r"```sh\n(.*?)```", page, re.DOTALL)]
    at = next(index for index, block in enumerate(blocks) if "where.wsgi <<" in block)
    setup, command, expectations = blocks[at : at + 3]
    subprocess.run(["sh", "-e", "-c", setup], cwd=tmp_path, check=True)
    words = shlex.split(command)
    assert words == ["ferrule", "start-server", "where.wsgi", "--port", "8000"]
    server = ferrule_server(str(tmp_path / "where.wsgi"), *mode_options)
    for line in expectations.strip().splitlines():
        curl, _, expected = line.partition("#")
        curl = curl.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        expected = expected.strip().replace("8000", str(server.port))
        result = subprocess.run(
            [*shlex.split(curl), "--silent", "--show-error", "--fail"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, (curl, result.stderr)
        assert result.stdout == expected + "\n", curl


def test_server_name_and_port_for_a_plain_request(server):
    environ = environ_of(server.get("/"))
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert environ["SERVER_PORT"] == str(server.port)


def test_remote_addr_is_the_loopback_client(server):
    assert environ_of(server.get("/"))["REMOTE_ADDR"] == "127.0.0.1"


def test_remote_port_is_the_client_socket_port(server):
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    report, (client_host, client_port) = raw_exchange(server.port, request)
    assert report["environ"]["REMOTE_ADDR"] == client_host == "127.0.0.1"
    assert report["environ"]["REMOTE_PORT"] == str(client_port)


# --- wsgi.* and mod_wsgi.* --------------------------------------------------------------


def test_wsgi_version(server):
    assert environ_of(server.get("/"))["wsgi.version"] == repr((1, 0))


def test_wsgi_url_scheme_is_http(server):
    assert environ_of(server.get("/"))["wsgi.url_scheme"] == "http"


def test_wsgi_input_terminated(server):
    assert environ_of(server.get("/"))["wsgi.input_terminated"] == "True"


def test_wsgi_run_once_is_false(server):
    assert environ_of(server.get("/"))["wsgi.run_once"] == "False"


def test_wsgi_multithread_with_default_threads(server):
    assert environ_of(server.get("/"))["wsgi.multithread"] == "True"


def test_wsgi_multithread_is_false_with_one_thread(ferrule_server, mode_options):
    server = ferrule_server("environ.wsgi", *mode_options, "--threads", "1")
    assert environ_of(server.get("/"))["wsgi.multithread"] == "False"


def test_wsgi_multiprocess_is_false_with_one_process(server):
    assert environ_of(server.get("/"))["wsgi.multiprocess"] == "False"


def test_wsgi_multiprocess_is_true_with_two_processes(ferrule_server, mode_options):
    server = ferrule_server("environ.wsgi", *mode_options, "--processes", "2")
    assert environ_of(server.get("/"))["wsgi.multiprocess"] == "True"


def test_wsgi_errors_and_file_wrapper_are_present(server):
    environ = environ_of(server.get("/"))
    assert environ["wsgi.errors"] not in ("", "None")
    assert environ["wsgi.file_wrapper"] not in ("", "None")
    assert environ["wsgi.input"] not in ("", "None")


def test_mod_wsgi_process_group_names_the_daemon_group(server, mode_options):
    # mod_wsgi-express names its daemon process group HOST:PORT; embedded mode has none.
    expected = "" if "--embedded-mode" in mode_options else f"127.0.0.1:{server.port}"
    assert environ_of(server.get("/"))["mod_wsgi.process_group"] == expected


def test_mod_wsgi_application_group_is_present(server):
    environ = environ_of(server.get("/"))
    assert "mod_wsgi.application_group" in environ
    # mod_wsgi-express runs the application in the main interpreter (%{GLOBAL}): ''.
    assert environ["mod_wsgi.application_group"] == ""


# --- Request headers --------------------------------------------------------------------


def test_each_header_becomes_an_http_key(server):
    response = server.get(
        "/",
        headers={"X-Custom-Thing": "one", "Accept-Language": "fr", "X-Lower": "MiXeD Value"},
    )
    environ = environ_of(response)
    assert environ["HTTP_X_CUSTOM_THING"] == "one"
    assert environ["HTTP_ACCEPT_LANGUAGE"] == "fr"
    assert environ["HTTP_X_LOWER"] == "MiXeD Value"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{server.port}"


def test_the_common_headers_and_methods_have_their_keys_and_values(server):
    """The keys of common headers and the common methods are strings made once per
    process; each must still say what this request sent."""
    sent = {
        "User-Agent": "agent/1",
        "Accept": "text/html",
        "Accept-Encoding": "identity",
        "Accept-Language": "fr",
        "Cookie": "a=1",
        "Referer": "http://example.com/",
        "Authorization": "Bearer x",
        "Cache-Control": "no-cache",
        "X-Forwarded-For": "192.0.2.1",
        "X-Forwarded-Proto": "https",
        "Content-Type": "text/plain",
    }
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"):
        response = requests.request(method, server.url, headers=sent, data=b"abc", timeout=30)
        environ = environ_of(response)
        assert environ["REQUEST_METHOD"] == method
        for name, value in sent.items():
            key = name.upper().replace("-", "_")
            key = key if key == "CONTENT_TYPE" else "HTTP_" + key
            assert environ[key] == value, key
        assert environ["CONTENT_LENGTH"] == "3"
        assert environ["HTTP_CONNECTION"] == "keep-alive"


def test_no_key_reaches_the_application_unset(server):
    """Every key set per request has a placeholder in the per-process template: none may
    be left there, whatever the request (no Host, HTTP/1.0, a HEAD)."""
    for request in (
        b"GET /a?b=c HTTP/1.1\r\nHost: Example.COM\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ):
        environ = raw_environ(server.port, request)
        assert [key for key, value in environ.items() if value == "None"] == []
    assert raw_environ(server.port, b"GET / HTTP/1.0\r\n\r\n")["SERVER_PROTOCOL"] == "HTTP/1.0"
    environ = raw_environ(
        server.port, b"GET /x HTTP/1.1\r\nHost: Example.COM:81\r\nConnection: close\r\n\r\n"
    )
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "81")
    assert environ["HTTP_HOST"] == "Example.COM:81"


def test_repeated_header_values_are_joined_with_comma_space(server):
    environ = raw_get(
        server.port,
        b"/",
        b"X-Dup: first",
        b"Accept: text/html",
        b"X-Dup: second",
        b"X-Dup: third",
    )
    assert environ["HTTP_X_DUP"] == "first, second, third"
    assert environ["HTTP_ACCEPT"] == "text/html"


def test_header_names_with_underscores_or_dots_never_reach_the_environ(server):
    environ = raw_get(
        server.port,
        b"/",
        b"X_Forwarded_For: evil",
        b"X-Forwarded-For: good",
        b"X.Foo: 1",
    )
    assert environ["HTTP_X_FORWARDED_FOR"] == "good"
    assert "HTTP_X_FOO" not in environ
    assert "HTTP_X.FOO" not in environ
    carriers = {key: value for key, value in environ.items() if "evil" in value}
    assert carriers == {}


def test_underscore_header_alone_does_not_pose_as_the_dashed_one(server):
    environ = raw_get(server.port, b"/", b"X_Forwarded_For: evil")
    assert "HTTP_X_FORWARDED_FOR" not in environ
    assert not [key for key, value in environ.items() if "evil" in value]


def test_non_ascii_header_value_bytes_arrive_as_latin1(server):
    environ = raw_get(server.port, b"/", b"X-Name: caf\xe9", b"X-Utf8: caf\xc3\xa9")
    assert environ["HTTP_X_NAME"] == "caf\xe9"
    assert len(environ["HTTP_X_NAME"]) == 4
    assert environ["HTTP_X_UTF8"] == "caf\xc3\xa9"


# --- The server's own environment -------------------------------------------------------


def test_os_environ_does_not_override_request_data(ferrule_server, mode_options):
    server = ferrule_server(
        "environ.wsgi",
        *mode_options,
        env={
            "HTTP_HOST": "evil",
            "PATH_INFO": "evil",
            "SERVER_NAME": "evil",
            "HTTP_X_MISSING": "evil",
        },
    )
    environ = environ_of(server.get("/real"))
    assert environ["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert environ["PATH_INFO"] == "/real"
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert "HTTP_X_MISSING" not in environ
    assert not [key for key, value in environ.items() if value == "evil"]


def test_issue_15_server_admin_and_request_id_are_set_and_gateway_interface_is_not(server):
    first = environ_of(server.get("/"))
    second = environ_of(server.get("/"))
    # Apache's value when no ServerAdmin is configured, as mod_wsgi-express 6.1 shows it.
    assert first["SERVER_ADMIN"] == "[no address given]"
    # mod_wsgi does not set GATEWAY_INTERFACE.
    assert "GATEWAY_INTERFACE" not in first
    ids = {first["mod_wsgi.request_id"], second["mod_wsgi.request_id"]}
    assert len(ids) == 2
    for request_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{6,16}", request_id), request_id


def test_issue_15_proxy_header_never_becomes_http_proxy(server):
    # httpoxy: HTTP_PROXY is what many libraries read as their proxy; mod_wsgi drops it.
    environ = raw_get(server.port, b"/", b"Proxy: http://evil.example:1/", b"X-Other: kept")
    assert "HTTP_PROXY" not in environ
    assert not [key for key, value in environ.items() if "evil" in value]
    assert environ["HTTP_X_OTHER"] == "kept"


def test_mod_wsgi_keys_are_those_mod_wsgi_6_gives(server):
    before = time.time()
    report = report_of(server.get("/mod/wsgi"))
    environ = report["environ"]
    assert environ["mod_wsgi.callable_object"] == "application"
    assert environ["mod_wsgi.request_handler"] == "wsgi-script"
    assert environ["mod_wsgi.script_name"] == ""
    assert environ["mod_wsgi.path_info"] == "/mod/wsgi"
    assert environ["mod_wsgi.listener_port"] == str(server.port)
    assert environ["mod_wsgi.version"] == "(4, 3, 0)"
    request_start = float(environ["mod_wsgi.request_start"])
    application_start = float(environ["mod_wsgi.application_start"])
    assert before - 1 <= request_start <= application_start <= time.time() + 1
    assert int(environ["mod_wsgi.thread_id"]) in range(1, 6)
    # mod_wsgi keeps its internal carriers (mod_wsgi.x-*) and HTTPS/PATH out of the environ.
    assert not [key for key in environ if key.startswith("mod_wsgi.x-")]
    assert "HTTPS" not in environ


def test_path_info_is_normalized_like_apache(server):
    environ = raw_get(server.port, b"/a//b/./c/../d/")
    assert environ["PATH_INFO"] == "/a/b/d/"
    assert environ["REQUEST_URI"] == "/a//b/./c/../d/"
    assert raw_get(server.port, b"/../../etc/passwd")["PATH_INFO"] == "/etc/passwd"


def test_an_encoded_slash_is_refused_with_404(server):
    response = server.get("/a%2Fb")
    assert response.status_code == 404
    assert "encoded slash" in response.text
    assert server.get("/a%2fb").status_code == 404


OS_ENVIRON_APP = """
import json
import os


def application(environ, start_response):
    names = ("FERRULE_TEST_SET", "FERRULE_TEST_PASSED", "FERRULE_TEST_UNSET", "PATH_INFO")
    report = {
        "environ": {name: environ.get(name) for name in names},
        "os_environ": {name: os.environ.get(name) for name in names},
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(report).encode()]
"""


def test_setenv_and_passenv_reach_the_environ_not_os_environ(
    ferrule_server, mode_options, tmp_path
):
    """--setenv adds a key to every request's environ (Apache's SetEnv: never
    os.environ); --passenv copies the server's variable, and one the server lacks is left
    out; the request's own keys win over both, as in mod_wsgi."""
    app = tmp_path / "os_environ.wsgi"
    app.write_text(OS_ENVIRON_APP)
    server = ferrule_server(
        app,
        *mode_options,
        "--setenv", "FERRULE_TEST_SET", "set value é",
        "--setenv", "PATH_INFO", "/not/the/path",
        "--passenv", "FERRULE_TEST_PASSED",
        "--passenv", "FERRULE_TEST_UNSET",
        env={"FERRULE_TEST_PASSED": "from the server"},
    )  # fmt: skip
    for _ in range(2):
        report = server.get("/real/path").json()
        assert report["environ"] == {
            # PEP 3333 and mod_wsgi: one character per byte of the UTF-8 value.
            "FERRULE_TEST_SET": "set value é".encode().decode("latin-1"),
            "FERRULE_TEST_PASSED": "from the server",
            "FERRULE_TEST_UNSET": None,
            "PATH_INFO": "/real/path",
        }
        assert report["os_environ"]["FERRULE_TEST_SET"] is None
        assert report["os_environ"]["FERRULE_TEST_PASSED"] == "from the server"


def test_setenv_refuses_an_empty_name():
    result = run_ferrule("start-server", str(APPS / "environ.wsgi"), "--setenv", "", "x")
    assert result.returncode == 2
    assert "--setenv ''" in result.stderr


# --- Against mod_wsgi-express 6.1 (what tools/compare_environ.py found) ------------------


def test_mod_wsgi_thread_id_counts_from_one(ferrule_server, mode_options):
    # mod_wsgi-express numbers its request threads from 1, as our mod_wsgi module does.
    server = ferrule_server("environ.wsgi", *mode_options, "--threads", "1")
    assert environ_of(server.get("/"))["mod_wsgi.thread_id"] == "1"
    assert environ_of(server.get("/"))["mod_wsgi.thread_id"] == "1"


def test_wsgi_multiprocess_follows_an_explicit_processes_option(ferrule_server, mode_options):
    # mod_wsgi-express hands `--processes` on to its daemon group as `processes=N`, which
    # mod_wsgi takes as multiprocess even for 1; in embedded mode one process is one.
    server = ferrule_server("environ.wsgi", *mode_options, "--processes", "1")
    expected = "False" if "--embedded-mode" in mode_options else "True"
    assert environ_of(server.get("/"))["wsgi.multiprocess"] == expected


def test_mod_wsgi_listener_host_is_the_host_listened_on(server):
    # The host of the Listen directive mod_wsgi-express writes for --host (here 127.0.0.1).
    assert environ_of(server.get("/"))["mod_wsgi.listener_host"] == "127.0.0.1"


def test_mod_wsgi_queue_and_daemon_start(server, mode_options):
    # mod_wsgi-express: in daemon mode the times the request was queued for a daemon and
    # the daemon received it, between request_start and application_start; in embedded
    # mode both 0.0.
    environ = environ_of(server.get("/"))
    times = [
        float(environ[f"mod_wsgi.{key}"])
        for key in ("request_start", "queue_start", "daemon_start", "application_start")
    ]
    if "--embedded-mode" in mode_options:
        assert environ["mod_wsgi.queue_start"] == environ["mod_wsgi.daemon_start"] == "0.0"
    else:
        assert times == sorted(times), times
        assert times[0] > time.time() - 60


def test_mod_wsgi_server_pid_is_the_process_that_took_the_connection(server, mode_options):
    # mod_wsgi-express: the Apache process that accepted the connection. In daemon mode
    # that is not the daemon running the application but the front end (here the
    # process started); in embedded mode the application's own process.
    report = report_of(server.get("/"))
    embedded = "--embedded-mode" in mode_options
    expected = report["pid"] if embedded else server.process.pid
    assert report["environ"]["mod_wsgi.server_pid"] == str(expected)
    assert embedded or report["pid"] != server.process.pid
