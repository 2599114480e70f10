"""Reverse proxying: --proxy-mount-point (and --proxy-url-alias), --proxy-virtual-host and
--proxy-timeout, against a real upstream HTTP server (`Upstream` in conftest.py) on real
sockets, in both modes."""

import hashlib
import json
import os
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
import trustme

from conftest import free_port, run_ferrule, wait_until

APP = "environ.wsgi"


def headers_of(record: dict) -> dict:
    """The upstream's record of the headers it got: name -> list of values."""
    seen: dict = {}
    for name, value in record["headers"]:
        seen.setdefault(name, []).append(value)
    return seen


def app_answered(response: requests.Response) -> bool:
    return response.status_code == 200 and "environ" in response.json()


# -- paths ---------------------------------------------------------------------------------


def test_mount_point_without_slash_maps_paths_and_queries(ferrule_server, mode_options, upstream):
    server = ferrule_server(
        APP,
        *mode_options,
        "--proxy-mount-point",
        "/api",
        f"{upstream.url}/base",
        "--access-log",
    )
    response = server.get("/api/a/b%20c?x=1&y=%2F")
    assert response.status_code == 200, response.text
    assert response.json()["target"] == "/base/a/b%20c?x=1&y=%2F"
    # The mount point itself: redirected to its / form, the query kept.
    response = server.get("/api?x=1", allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"] == f"{server.url}/api/?x=1"
    response = server.get("/api/")
    assert response.json()["target"] == "/base/"
    # A path that only starts like the mount point, and the rest of the site: the app.
    assert app_answered(server.get("/apiary"))
    assert app_answered(server.get("/"))
    assert len(upstream.requests) == 2
    log = wait_until(
        lambda: (
            (server.server_root / "access_log").exists()
            and (server.server_root / "access_log").read_text().count("\n") >= 5
            and (server.server_root / "access_log").read_text()
        )
    )
    assert '"GET /api/a/b%20c?x=1&y=%2F HTTP/1.1" 200' in log
    assert '"GET /api?x=1 HTTP/1.1" 302' in log


def test_mount_point_with_slash_and_the_older_option_name(ferrule_server, mode_options, upstream):
    server = ferrule_server(
        APP,
        *mode_options,
        "--proxy-url-alias",
        "/svc/",
        f"{upstream.url}/",
        "--proxy-mount-point",
        "/svc/deeper",
        f"{upstream.url}/other/",
    )
    assert server.get("/svc/x/y").json()["target"] == "/x/y"
    # The longest mount point wins.
    assert server.get("/svc/deeper/z").json()["target"] == "/other/z"
    response = server.get("/svc", allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"] == f"{server.url}/svc/"
    # Paths are matched normalized: `..` cannot step out of or into a mount point.
    assert server.get("/x/../svc/q").json()["target"] == "/q"
    assert app_answered(server.get("/svc/../elsewhere"))


# -- bodies --------------------------------------------------------------------------------


def test_post_bodies_with_length_and_chunked(ferrule_server, mode_options, upstream):
    server = ferrule_server(APP, *mode_options, "--proxy-mount-point", "/api", upstream.url)
    body = os.urandom(3 * 1024 * 1024 + 17)
    response = server.post("/api/upload", data=body)
    record = response.json()
    assert record["method"] == "POST"
    assert record["length"] == len(body)
    assert record["sha256"] == hashlib.sha256(body).hexdigest()
    assert headers_of(record)["content-length"] == [str(len(body))]

    def pieces():
        for start in range(0, len(body), 100_000):
            yield body[start : start + 100_000]

    record = server.post("/api/chunked", data=pieces()).json()
    assert record["length"] == len(body)
    assert record["sha256"] == hashlib.sha256(body).hexdigest()
    assert headers_of(record)["transfer-encoding"] == ["chunked"]
    # A body over --limit-request-body (10 MiB by default) never reaches the upstream.
    response = server.post("/api/big", data=b"x" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert all(record["target"] != "/big" for record in upstream.requests)


UPLOAD_SIZE = 100 * 1024 * 1024
UPLOAD_BLOCK = 1024 * 1024


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_large_upload_streams_through(ferrule_server, mode_options, upstream):
    server = ferrule_server(
        APP,
        *mode_options,
        "--proxy-mount-point",
        "/api",
        upstream.url,
        "--limit-request-body",
        "0",
    )
    # The process that proxies: the front end (the supervisor in daemon mode).
    assert server.get("/api/warm").status_code == 200
    pid = server.child_pids()[0] if mode_options else server.process.pid
    before = peak_rss_kb(pid)
    block = os.urandom(UPLOAD_BLOCK)
    expected = hashlib.sha256()

    def blocks():
        for _ in range(UPLOAD_SIZE // UPLOAD_BLOCK):
            expected.update(block)
            yield block

    record = server.post("/api/upload", data=blocks(), timeout=120).json()
    assert record["length"] == UPLOAD_SIZE
    assert record["sha256"] == expected.hexdigest()
    grown = peak_rss_kb(pid) - before
    assert grown < 30_000, f"peak RSS grew by {grown} kB: the body was buffered"


def test_a_streamed_response_arrives_piece_by_piece(ferrule_server, mode_options, upstream):
    server = ferrule_server(APP, *mode_options, "--proxy-mount-point", "/api", upstream.url)
    with server.get("/api/stream", stream=True) as response:
        assert response.status_code == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        pieces = response.iter_content(chunk_size=None)
        # The upstream holds its second piece until the first reached the client.
        assert next(pieces) == b"first"
        upstream.release.set()
        assert b"".join(pieces) == b"second"


def test_head_request(ferrule_server, mode_options, upstream):
    server = ferrule_server(APP, *mode_options, "--proxy-mount-point", "/api", upstream.url)
    response = requests.head(f"{server.url}/api/thing", timeout=30)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) > 0
    assert response.content == b""
    assert upstream.requests[-1]["method"] == "HEAD"


def test_upstream_connections_are_kept_between_requests(ferrule_server, mode_options, upstream):
    server = ferrule_server(APP, *mode_options, "--proxy-mount-point", "/api", upstream.url)
    session = requests.Session()
    ports = {
        session.get(f"{server.url}/api/n{index}", timeout=30).json()["client_port"]
        for index in range(5)
    }
    assert len(ports) == 1, ports
    # An upstream that closes a connection without warning: the next request still gets
    # through, on a new connection.
    closed = session.get(f"{server.url}/api/quietclose", timeout=30).json()["client_port"]
    for index in range(3):
        response = session.get(f"{server.url}/api/after{index}", timeout=30)
        assert response.status_code == 200, response.text
    assert response.json()["client_port"] != closed


# -- headers -------------------------------------------------------------------------------


def test_request_headers_forwarded_and_cleaned(ferrule_server, mode_options, upstream):
    server = ferrule_server(APP, *mode_options, "--proxy-mount-point", "/api", upstream.url)
    response = server.get(
        "/api/echo",
        headers={
            "Host": "site.example:8080",
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic eDp5",
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Proto": "https",
            "X-Client": "kept",
        },
    )
    seen = headers_of(response.json())
    for gone in ("x-drop-me", "keep-alive", "te", "proxy-authorization", "expect"):
        assert gone not in seen, seen
    assert seen["host"] == [f"127.0.0.1:{upstream.port}"]
    assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert seen["x-forwarded-host"] == ["site.example:8080"]
    assert seen["x-forwarded-server"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-scheme"] == ["http"]
    assert seen["x-forwarded-port"] == [str(server.port)]
    assert seen["x-forwarded-prefix"] == ["/api"]
    assert seen["x-client"] == ["kept"]


def test_response_headers_cleaned_and_location_mapped_back(ferrule_server, mode_options, upstream):
    server = ferrule_server(
        APP, *mode_options, "--proxy-mount-point", "/api", f"{upstream.url}/base"
    )
    response = server.get("/api/hop")
    assert response.status_code == 200
    assert response.headers["X-Up"] == "kept"
    for gone in ("X-Up-Secret", "Keep-Alive", "Proxy-Authenticate"):
        assert gone not in response.headers, response.headers
    response = server.get("/api/redirect", allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"] == f"{server.url}/api/next?a=1"


# -- virtual hosts -------------------------------------------------------------------------


def test_virtual_host_by_host_header(ferrule_server, mode_options, upstream):
    server = ferrule_server(
        APP,
        *mode_options,
        "--server-name",
        "app.example",
        "--proxy-virtual-host",
        "api.example",
        upstream.url,
    )
    response = server.get("/x/y?z=1", headers={"Host": "API.example:8000"})
    record = response.json()
    assert record["target"] == "/x/y?z=1"
    seen = headers_of(record)
    assert seen["x-forwarded-server"] == ["api.example"]
    assert seen["x-forwarded-host"] == ["API.example:8000"]
    assert "x-forwarded-prefix" not in seen
    # The application's own host, and a host neither serves (the front door's 403).
    assert app_answered(server.get("/x/y", headers={"Host": "app.example"}))
    assert server.get("/x/y", headers={"Host": "other.example"}).status_code == 403
    assert len(upstream.requests) == 1


# -- failures ------------------------------------------------------------------------------


def test_upstream_down_is_502_and_logged(ferrule_server, mode_options):
    nobody = free_port()
    server = ferrule_server(
        APP, *mode_options, "--proxy-mount-point", "/api", f"http://127.0.0.1:{nobody}/"
    )
    response = server.get("/api/x")
    assert response.status_code == 502
    assert "could not be reached" in response.text
    log = server.wait_for_log(f"cannot connect to http://127.0.0.1:{nobody}/")
    assert "[proxy:error]" in log
    assert "GET /api/x" in log
    assert app_answered(server.get("/"))


def test_upstream_slow_past_proxy_timeout_is_504(ferrule_server, mode_options, upstream):
    server = ferrule_server(
        APP,
        *mode_options,
        "--proxy-mount-point",
        "/api",
        upstream.url,
        "--proxy-timeout",
        "1",
    )
    response = server.get("/api/slow")
    assert response.status_code == 504
    assert "did not answer in time" in response.text
    log = server.wait_for_log("did not answer within --proxy-timeout (1 seconds)")
    assert "[proxy:error]" in log


def test_a_connection_never_accepted_past_proxy_timeout_is_504(ferrule_server, mode_options):
    # A listener whose accept queue is full: the kernel leaves new connections unanswered.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        while True:
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
            _, writable, _ = select.select([], [filler], [], 0.5)
            if not writable:
                break
            assert len(fillers) < 64, "the accept queue never filled"
        server = ferrule_server(
            APP,
            *mode_options,
            "--proxy-mount-point",
            "/api",
            f"http://127.0.0.1:{port}/",
            "--proxy-timeout",
            "1",
        )
        response = server.get("/api/x")
        assert response.status_code == 504
        server.wait_for_log("did not answer within --proxy-timeout (1 seconds)")
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_upstream_that_closes_without_answering_is_502(ferrule_server, mode_options):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    server = ferrule_server(
        APP, *mode_options, "--proxy-mount-point", "/api", f"http://127.0.0.1:{port}/"
    )

    def close_each():
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.close()

    closer = threading.Thread(target=close_each)
    closer.start()
    try:
        response = server.get("/api/x")
    finally:
        closer.join()
        listener.close()
    assert response.status_code == 502
    server.wait_for_log("[proxy:error]")


def test_error_documents_replace_the_proxys_errors_not_the_upstreams(
    ferrule_server, mode_options, upstream, tmp_path
):
    site = tmp_path / "site"
    site.mkdir()
    (site / "404.html").write_text("our 404 page")
    (site / "502.html").write_text("our 502 page")
    server = ferrule_server(
        APP,
        *mode_options,
        "--document-root",
        str(site),
        "--error-document",
        "404",
        "/404.html",
        "--error-document",
        "502",
        "/502.html",
        "--error-override",
        "--proxy-mount-point",
        "/api",
        upstream.url,
        "--proxy-mount-point",
        "/down",
        f"http://127.0.0.1:{free_port()}/",
    )
    # Apache passes a proxied error through unless ProxyErrorOverride is on, and
    # mod_wsgi-express does not turn it on: --error-override is about the application.
    response = server.get("/api/missing")
    assert response.status_code == 404
    assert response.text == "the upstream's own 404"
    assert "x-ferrule-proxied" not in response.headers
    # The proxy's own error is the server's, and gets the site's page.
    response = server.get("/down/x")
    assert response.status_code == 502
    assert response.text == "our 502 page"


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--proxy-mount-point", "api", "http://127.0.0.1:1/"],
            "--proxy-mount-point 'api http://127.0.0.1:1/': the URL path must start with /",
        ),
        (
            ["--proxy-url-alias", "/a", "https://example.com/"],
            "https:// upstreams are not supported yet",
        ),
        (
            ["--proxy-virtual-host", "a b", "http://127.0.0.1:1/"],
            "--proxy-virtual-host 'a b http://127.0.0.1:1/': 'a b' is not a host name",
        ),
        (
            ["--proxy-mount-point", "/a", "ftp://example.com/"],
            "is not an http:// URL",
        ),
        (["--proxy-timeout", "0"], "--proxy-timeout"),
    ],
)
def test_bad_proxy_options_are_refused(tmp_path, options, message):
    app = Path(__file__).parent / "apps" / APP
    result = run_ferrule(
        "start-server", str(app), "--server-root", str(tmp_path / "root"), *options
    )
    assert result.returncode == 2, result
    assert message in result.stderr


def test_proxying_with_access_scripts_is_refused(tmp_path):
    app = Path(__file__).parent / "apps" / APP
    script = tmp_path / "auth.wsgi"
    script.write_text("def check_password(environ, user, password):\n    return True\n")
    result = run_ferrule(
        "start-server",
        str(app),
        "--server-root",
        str(tmp_path / "root"),
        "--proxy-mount-point",
        "/api",
        "http://127.0.0.1:1/",
        "--auth-user-script",
        str(script),
    )
    assert result.returncode == 2, result
    assert "proxied requests would not be checked by the access-control scripts" in result.stderr


def test_options_show_in_help():
    result = run_ferrule("start-server", "--help")
    for option in (
        "--proxy-mount-point",
        "--proxy-url-alias",
        "--proxy-virtual-host",
        "--proxy-timeout",
    ):
        assert option in result.stdout
    assert "not supported yet" not in json.dumps(
        [line for line in result.stdout.splitlines() if "--proxy-" in line]
    )


# -- the documented example ----------------------------------------------------------------


def test_the_documented_example(ferrule_server, mode_options, tmp_path):
    # docs/proxying.md: Python's file server under /files/, the application on /.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note.txt").write_text("hello\n")
    port = free_port()
    files = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
        + ["--directory", str(shared)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def accepting():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_until(accepting)
        hello = Path(__file__).parent.parent / "examples" / "hello.wsgi"
        server = ferrule_server(
            hello, *mode_options, "--proxy-mount-point", "/files", f"http://127.0.0.1:{port}/"
        )
        response = server.get("/files/note.txt", headers={"Host": "localhost"})
        assert response.status_code == 200
        assert response.text == "hello\n"
        response = server.get("/files", headers={"Host": "localhost"}, allow_redirects=False)
        assert response.status_code == 302
        assert response.headers["Location"] == "http://localhost/files/"
        response = server.get("/")
        assert response.status_code == 200
        assert response.text == "Hello World!\n"
    finally:
        files.terminate()
        files.wait()


# -- over HTTPS ----------------------------------------------------------------------------


def test_proxied_over_https(ferrule_server, mode_options, upstream, tmp_path):
    ca = trustme.CA()
    certificate = ca.issue_cert("localhost")
    certificate.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    certificate.cert_chain_pems[0].write_to_path(str(tmp_path / "server.crt"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    port = free_port()
    ferrule_server(
        APP,
        *mode_options,
        "--https-port",
        str(port),
        "--ssl-certificate",
        str(tmp_path / "server"),
        "--proxy-mount-point",
        "/api",
        f"{upstream.url}/base",
    )

    def get(path: str) -> requests.Response:
        return requests.get(
            f"https://localhost:{port}{path}",
            verify=str(tmp_path / "ca.pem"),
            allow_redirects=False,
            timeout=30,
        )

    seen = headers_of(get("/api/echo").json())
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-scheme"] == ["https"]
    assert seen["x-forwarded-port"] == [str(port)]
    assert get("/api/redirect").headers["Location"] == f"https://localhost:{port}/api/next?a=1"
    assert get("/api").headers["Location"] == f"https://localhost:{port}/api/"
