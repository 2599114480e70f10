"""--with-php5: the .php files of the document root answered by a real php-fpm pool that
the server starts, restarts and stops, over FastCGI, beside the WSGI application, in both
modes."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import trustme

from conftest import APPS, free_port, host_readings, make_reachable, run_ferrule, wait_until

PHP_FPM = shutil.which("php-fpm") or next(
    (str(path) for path in sorted(Path("/usr/sbin").glob("php-fpm*"), reverse=True)), None
)

pytestmark = pytest.mark.skipif(PHP_FPM is None, reason="php-fpm is not installed")

REPORT_PHP = """<?php
header('Content-Type: application/json');
header('X-Set-By: php');
setcookie('visited', 'yes');
$files = [];
foreach ($_FILES as $name => $file) {
    $files[$name] = ['name' => $file['name'], 'content' => file_get_contents($file['tmp_name'])];
}
$server = [];
foreach (['REQUEST_METHOD', 'QUERY_STRING', 'SCRIPT_NAME', 'SCRIPT_FILENAME', 'PATH_INFO',
          'REQUEST_URI', 'DOCUMENT_ROOT', 'SERVER_PORT', 'SERVER_NAME', 'REMOTE_ADDR',
          'CONTENT_TYPE', 'CONTENT_LENGTH', 'HTTP_X_TEST', 'HTTPS', 'GATEWAY_INTERFACE'] as $key) {
    $server[$key] = $_SERVER[$key] ?? null;
}
echo json_encode(['get' => $_GET, 'post' => $_POST, 'cookie' => $_COOKIE,
                  'files' => $files, 'server' => $server,
                  'input' => file_get_contents('php://input'),
                  'uid' => function_exists('posix_geteuid') ? posix_geteuid() : null]);
"""

STATUS_PHP = """<?php
http_response_code(418);
header('X-Teapot: short and stout');
echo "I am a teapot\\n";
"""

REDIRECT_PHP = """<?php
header('Location: /elsewhere');
"""

FATAL_PHP = """<?php
echo "before";
call_to_a_function_that_does_not_exist();
"""


def make_site(tmp_path: Path) -> Path:
    root = tmp_path / "htdocs"
    (root / "section").mkdir(parents=True)
    (root / "report.php").write_text(REPORT_PHP)
    (root / "status.php").write_text(STATUS_PHP)
    (root / "redirect.php").write_text(REDIRECT_PHP)
    (root / "fatal.php").write_text(FATAL_PHP)
    (root / "section" / "index.php").write_text("<?php echo 'section index';")
    (root / "plain.txt").write_text("static text\n")
    return root


@pytest.fixture
def php_server(ferrule_server, mode_options, tmp_path):
    root = make_site(tmp_path)
    return ferrule_server(
        "environ.wsgi", *mode_options, "--document-root", str(root), "--with-php5"
    )


def children_of(pid: int) -> list[int]:
    """The children of every thread of `pid` (a restarted php-fpm is the child of the
    thread that watches it)."""
    pids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            pids += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return pids


def php_fpm_pids(server) -> list[int]:
    """The php-fpm master the supervisor started, and its workers."""
    masters = []
    for pid in children_of(server.process.pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().startswith("php-fpm"):
                masters.append(pid)
        except FileNotFoundError:
            pass
    pids = list(masters)
    for master in masters:
        pids += children_of(master)
    return pids


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except FileNotFoundError:
        return False


def test_a_php_page_gets_the_query_form_cookie_and_headers(php_server):
    response = php_server.post(
        "/report.php/extra/path?colour=blue&size=2",
        data={"name": "Ferrule", "note": "a&b=c"},
        cookies={"session": "abc123"},
        headers={"X-Test": "sent by the client"},
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Set-By"] == "php"
    assert response.cookies["visited"] == "yes"
    report = response.json()
    assert report["get"] == {"colour": "blue", "size": "2"}
    assert report["post"] == {"name": "Ferrule", "note": "a&b=c"}
    assert report["cookie"] == {"session": "abc123"}
    server = report["server"]
    assert server["REQUEST_METHOD"] == "POST"
    assert server["QUERY_STRING"] == "colour=blue&size=2"
    assert server["SCRIPT_NAME"] == "/report.php"
    assert server["PATH_INFO"] == "/extra/path"
    assert server["REQUEST_URI"] == "/report.php/extra/path?colour=blue&size=2"
    assert server["SCRIPT_FILENAME"].endswith("/htdocs/report.php")
    assert server["DOCUMENT_ROOT"].endswith("/htdocs")
    assert server["SERVER_PORT"] == str(php_server.port)
    assert server["SERVER_NAME"] == "127.0.0.1"
    assert server["REMOTE_ADDR"] == "127.0.0.1"
    assert server["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert server["HTTP_X_TEST"] == "sent by the client"
    assert server["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert server["HTTPS"] is None


def test_server_name_and_port_are_the_applications(php_server):
    """One reading of Host for PHP's `$_SERVER` and the WSGI application beside it, as
    under Apache, where both get `ap_get_server_name` and `ap_get_server_port`."""
    for host, name, port in host_readings(php_server.port):
        headers = {"Host": host}
        page = php_server.get("/report.php", headers=headers).json()["server"]
        application = php_server.get("/application", headers=headers).json()["environ"]
        seen = [(e["SERVER_NAME"], e["SERVER_PORT"]) for e in (page, application)]
        assert seen == [(name, port)] * 2, host


def test_a_multipart_upload_reaches_php(php_server):
    response = php_server.post(
        "/report.php",
        data={"title": "two files"},
        files={"upload": ("notes.txt", b"line one\nline two\n", "text/plain")},
    )
    assert response.status_code == 200
    report = response.json()
    assert report["post"] == {"title": "two files"}
    assert report["files"] == {"upload": {"name": "notes.txt", "content": "line one\nline two\n"}}
    assert report["server"]["CONTENT_TYPE"].startswith("multipart/form-data; boundary=")


def test_a_large_body_is_streamed_to_php(php_server):
    body = b"x" * (3 * 1024 * 1024 + 7)
    response = php_server.post(
        "/report.php", data=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200
    report = response.json()
    assert len(report["input"]) == len(body)
    assert report["server"]["CONTENT_LENGTH"] == str(len(body))


def test_status_and_headers_set_by_php(php_server):
    response = php_server.get("/status.php")
    assert response.status_code == 418
    assert response.headers["X-Teapot"] == "short and stout"
    assert response.text == "I am a teapot\n"
    redirect = php_server.get("/redirect.php", allow_redirects=False)
    assert redirect.status_code == 302
    assert redirect.headers["Location"] == "/elsewhere"


def test_index_php_is_a_directory_index(php_server):
    response = php_server.get("/section/")
    assert response.status_code == 200
    assert response.text == "section index"


def test_a_fatal_error_is_a_500_and_a_line_in_the_error_log(php_server):
    response = php_server.get("/fatal.php")
    assert response.status_code == 500
    log = php_server.wait_for_log("call_to_a_function_that_does_not_exist")
    line = next(line for line in log.splitlines() if "call_to_a_function_that" in line)
    assert "PHP Fatal error" in line
    assert "[php-fpm:error]" in line


def test_the_application_and_static_files_are_served_beside_php(php_server):
    response = php_server.get("/some/application/path?x=1")
    assert response.status_code == 200
    assert response.json()["environ"]["PATH_INFO"] == "/some/application/path"
    assert php_server.get("/plain.txt").text == "static text\n"
    # A .php name that is not a file is the application's, as any other path.
    missing = php_server.get("/missing.php")
    assert missing.status_code == 200
    assert missing.json()["environ"]["PATH_INFO"] == "/missing.php"


def test_a_killed_php_fpm_is_started_again(php_server):
    assert php_server.get("/status.php").status_code == 418
    (master,) = [
        pid for pid in php_fpm_pids(php_server) if pid in children_of(php_server.process.pid)
    ]
    os.kill(master, signal.SIGKILL)
    php_server.wait_for_log(f"php-fpm (pid {master}) was killed by signal 9; starting it again")
    # Requests that arrive meanwhile wait for the new pool rather than fail.
    assert php_server.get("/status.php").status_code == 418
    assert master not in php_fpm_pids(php_server)
    assert php_fpm_pids(php_server)


def test_no_php_fpm_is_left_after_the_server_stops(php_server):
    # Ondemand: a request makes php-fpm start a worker.
    assert php_server.get("/status.php").status_code == 418
    pids = php_fpm_pids(php_server)
    assert len(pids) >= 2, pids
    assert php_server.stop() == 0
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10)
    assert not (php_server.server_root / "run" / "php-fpm.sock").exists()


def test_workers_of_a_killed_server_are_stopped_by_the_next(ferrule_server, tmp_path):
    """The kernel kills php-fpm's master with a killed server, not its workers: the next
    server in the same server root stops them before it starts its own pool."""
    root = make_site(tmp_path)
    first = ferrule_server("environ.wsgi", "--document-root", str(root), "--with-php5")
    assert first.get("/status.php").status_code == 418
    pids = php_fpm_pids(first)
    assert len(pids) >= 2, pids
    masters = [pid for pid in pids if pid in children_of(first.process.pid)]
    first.process.kill()
    first.process.wait()
    wait_until(lambda: not any(alive(pid) for pid in masters), timeout=10)
    second = ferrule_server(
        "environ.wsgi",
        "--document-root",
        str(root),
        "--with-php5",
        server_root=first.server_root,
    )
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10)
    assert second.get("/status.php").status_code == 418


def test_php_needs_a_document_root(tmp_path):
    result = run_ferrule("start-server", str(APPS / "environ.wsgi"), "--with-php5", cwd=tmp_path)
    assert result.returncode == 2
    assert "--with-php5 needs --document-root" in result.stderr


def test_a_php_executable_that_is_not_a_program_is_refused(tmp_path):
    result = run_ferrule(
        "start-server",
        str(APPS / "environ.wsgi"),
        "--with-php5",
        "--document-root",
        str(tmp_path),
        "--php-executable",
        str(tmp_path / "no-such-php-fpm"),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert f"--php-executable '{tmp_path / 'no-such-php-fpm'}' is not an executable file" in (
        result.stderr
    )


def test_a_missing_php_fpm_names_the_package(tmp_path):
    """In a mount namespace where /usr/sbin is empty and PATH has no php-fpm."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a mount namespace")
    empty = tmp_path / "empty"
    empty.mkdir()
    script = (
        f"mount --bind {empty} /usr/sbin && "
        f"exec {sys.executable} -m ferrule start-server {APPS / 'environ.wsgi'} "
        f"--with-php5 --document-root {tmp_path}"
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "--with-php5 needs php-fpm" in result.stderr
    assert "apt-get install php-fpm" in result.stderr


def test_the_pool_runs_as_the_servers_user(ferrule_server, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    root = make_site(tmp_path)
    make_reachable("nobody", root / "report.php", APPS / "environ.wsgi")
    server = ferrule_server(
        "environ.wsgi",
        "--document-root",
        str(root),
        "--with-php5",
        "--user",
        "nobody",
    )
    response = server.get("/report.php")
    assert response.status_code == 200, response.text
    uid = response.json()["uid"]
    if uid is None:
        pytest.skip("PHP was built without the posix extension")
    assert uid == pwd.getpwnam("nobody").pw_uid


def test_php_is_served_over_https_with_https_on(ferrule_server, mode_options, tmp_path):
    ca = trustme.CA()
    certificate = ca.issue_cert("localhost")
    certificate.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    https_port = free_port()
    root = make_site(tmp_path)
    server = ferrule_server(
        "environ.wsgi",
        *mode_options,
        "--document-root",
        str(root),
        "--with-php5",
        "--https-port",
        str(https_port),
        "--ssl-certificate",
        str(tmp_path / "server"),
    )
    response = requests.get(
        f"https://localhost:{https_port}/report.php", verify=str(tmp_path / "ca.pem"), timeout=30
    )
    assert response.status_code == 200
    assert response.json()["server"]["HTTPS"] == "on"
    assert server.get("/report.php").json()["server"]["HTTPS"] is None


def test_the_documented_example(ferrule_server, mode_options, tmp_path):
    """docs/php.md's example, its commands run as written (the port is ours)."""
    page = (Path(__file__).parent.parent / "docs" / "php.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", page, re.DOTALL)
    setup, command, expectations = blocks[0], blocks[1], blocks[2]
    subprocess.run(["sh", "-e", "-c", setup], cwd=tmp_path, check=True)
    words = shlex.split(command)
    assert words[:3] == ["ferrule", "start-server", "app.wsgi"]
    port_at = words.index("--port")
    options = words[3:port_at] + words[port_at + 2 :]
    server = ferrule_server(str(tmp_path / "app.wsgi"), *mode_options, *options, cwd=tmp_path)
    for line in expectations.strip().splitlines():
        curl, _, expected = line.partition("#")
        curl = curl.replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        result = subprocess.run(
            shlex.split(curl) + ["--silent", "--show-error", "--fail"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, (curl, result.stderr)
        assert result.stdout == expected.strip() + "\n", curl
