"""HTTPS (issue 19): --https-port beside --port in both modes, the certificate options,
TLS 1.2 and 1.3 only, start-up errors naming the file, the handshake held to
--header-timeout, --ssl-environment, client certificates (--ssl-ca-certificate-file,
--ssl-verify-client), --https-only and --hsts-policy. Certificates are made here with
trustme; the clients are requests, curl and openssl s_client."""

from __future__ import annotations

import base64
import signal
import socket
import ssl
import subprocess
import time

import pytest
import requests
import trustme

from conftest import free_port, start_server, wait_until


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for localhost (STUB.crt/STUB.key), a client CA with one
    client certificate, and a stranger's client certificate."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", "example.com", "www.example.com")
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(folder / "server.crt"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    client_ca = trustme.CA()
    client_ca.cert_pem.write_to_path(str(folder / "client-ca.pem"))
    alice = client_ca.issue_cert("alice@example.com", common_name="alice")
    alice.private_key_and_cert_chain_pem.write_to_path(str(folder / "alice.pem"))
    mallory = trustme.CA().issue_cert("mallory@example.com", common_name="mallory")
    mallory.private_key_and_cert_chain_pem.write_to_path(str(folder / "mallory.pem"))
    return folder


def tls_options(pki, port: int, *more: str) -> tuple[str, ...]:
    return ("--https-port", str(port), "--ssl-certificate", str(pki / "server"), *more)


def https(port: int, path: str = "/", pki=None, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("verify", str(pki / "ca.pem"))
    return requests.get(f"https://localhost:{port}{path}", **kwargs)


def test_issue_19_https_and_http_are_served_at_once(ferrule_server, mode_options, pki):
    port = free_port()
    server = ferrule_server("environ.wsgi", *mode_options, *tls_options(pki, port))
    secure = https(port, "/x?y=1", pki)
    assert secure.status_code == 200
    environ = secure.json()["environ"]
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTPS"] == "1"
    assert environ["REQUEST_SCHEME"] == "https"
    assert environ["SERVER_PORT"] == str(port)
    assert environ["QUERY_STRING"] == "y=1"
    assert not any(key.startswith("SSL_") for key in environ)
    plain = server.get("/").json()["environ"]
    assert plain["wsgi.url_scheme"] == "http"
    assert "HTTPS" not in plain
    assert plain["SERVER_PORT"] == str(server.port)
    assert f"https://127.0.0.1:{port}/" in server.stdout()


def test_issue_19_bodies_both_ways_over_tls(ferrule_server, mode_options, pki, tmp_path):
    port = free_port()
    ferrule_server("environ.wsgi", *mode_options, *tls_options(pki, port))
    body = bytes(range(256)) * 8192  # 2 MiB: many records, a body that streams
    response = requests.post(
        f"https://localhost:{port}/", data=body, verify=str(pki / "ca.pem"), timeout=30
    )
    assert base64.b64decode(response.json()["body"]) == body
    # A file (no sendfile over TLS) and a streamed generator, on one keep-alive session.
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(index % 253 for index in range(3 * 1024 * 1024)))
    server = ferrule_server(
        "responses.wsgi",
        *mode_options,
        *tls_options(pki, free_port()),
        env={"RESPONSES_MARKER_DIR": str(tmp_path)},
    )
    tls_port = int(server.args[server.args.index("--https-port") + 1])
    with requests.Session() as session:
        # Per request: a session's own `verify` loses to REQUESTS_CA_BUNDLE.
        verify = str(pki / "ca.pem")
        url = f"https://localhost:{tls_port}"
        file = session.get(f"{url}/file?path={big}&tag=a", verify=verify, timeout=30)
        assert file.content == big.read_bytes()
        streamed = session.get(f"{url}/generator", verify=verify, timeout=30)
        assert streamed.content == b"one,two,three"
        assert streamed.headers["Transfer-Encoding"] == "chunked"


def test_issue_19_ssl_port_and_separate_files_send_the_chain(ferrule_server, tmp_path):
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("localhost")
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    intermediate.cert_pem.write_to_path(str(tmp_path / "chain.pem"))
    root.cert_pem.write_to_path(str(tmp_path / "root.pem"))
    port = free_port()
    options = (
        "--ssl-port",
        str(port),
        "--ssl-certificate-file",
        str(tmp_path / "cert.pem"),
        "--ssl-certificate-key-file",
        str(tmp_path / "key.pem"),
        "--ssl-certificate-chain-file",
        str(tmp_path / "chain.pem"),
    )
    ferrule_server("environ.wsgi", *options)
    response = requests.get(
        f"https://localhost:{port}/", verify=str(tmp_path / "root.pem"), timeout=30
    )
    assert response.json()["environ"]["wsgi.url_scheme"] == "https"


def s_client(port: int, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost"]
        + list(options),
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_issue_19_only_tls_1_2_and_1_3(ferrule_server, pki):
    port = free_port()
    ferrule_server("environ.wsgi", *tls_options(pki, port))
    for version, name in (("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")):
        result = s_client(port, version, "-CAfile", str(pki / "ca.pem"))
        assert result.returncode == 0, result.stderr
        assert f"Protocol  : {name}".encode() in result.stdout or name.encode() in result.stdout
        assert b"Verify return code: 0 (ok)" in result.stdout
    for version in ("-tls1", "-tls1_1"):
        result = s_client(port, version)
        assert result.returncode != 0
        assert b"BEGIN CERTIFICATE" not in result.stdout


def test_issue_19_curl_over_https(ferrule_server, pki):
    port = free_port()
    ferrule_server("environ.wsgi", *tls_options(pki, port))
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--cacert",
            str(pki / "ca.pem"),
            f"https://localhost:{port}/curl",
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert b'"PATH_INFO": "/curl"' in result.stdout


@pytest.mark.parametrize(
    "problem",
    ["missing-key", "garbage-certificate", "mismatched-key", "no-certificate", "no-port"],
)
def test_issue_19_bad_tls_files_stop_start_up_naming_them(tmp_path, pki, problem):
    other = trustme.CA().issue_cert("localhost")
    other.private_key_pem.write_to_path(str(tmp_path / "other.key"))
    (tmp_path / "garbage.crt").write_text("not a certificate\n")
    crt, key = str(pki / "server.crt"), str(pki / "server.key")
    port = str(free_port())
    options, named = {
        "missing-key": (
            ["--https-port", port, "--ssl-certificate-file", crt],
            "--https-port needs a certificate and its key",
        ),
        "garbage-certificate": (
            ["--https-port", port, "--ssl-certificate-file", str(tmp_path / "garbage.crt")]
            + ["--ssl-certificate-key-file", key],
            f"--ssl-certificate-file '{tmp_path / 'garbage.crt'}' holds no PEM certificate",
        ),
        "mismatched-key": (
            ["--https-port", port, "--ssl-certificate-file", crt]
            + ["--ssl-certificate-key-file", str(tmp_path / "other.key")],
            f"--ssl-certificate-key-file '{tmp_path / 'other.key'}'",
        ),
        "no-certificate": (
            ["--https-port", port, "--ssl-certificate", str(tmp_path / "nothing")],
            f"--ssl-certificate-file '{tmp_path / 'nothing.crt'}': cannot read it",
        ),
        "no-port": (["--ssl-certificate", str(pki / "server")], "needs --https-port"),
    }[problem]
    server = start_server(tmp_path, "environ.wsgi", *options, wait=False)
    assert server.process.wait(timeout=30) == 2
    assert named in server.stderr()


def test_issue_19_a_silent_tls_client_is_closed_by_the_header_timeout(ferrule_server, pki):
    port = free_port()
    server = ferrule_server(
        "environ.wsgi",
        *tls_options(pki, port, "--header-timeout", "1", "--header-max-timeout", "1"),
    )
    silent = socket.create_connection(("127.0.0.1", port))
    # Half a ClientHello: the handshake starts and stalls.
    half_hello = socket.create_connection(("127.0.0.1", port))
    half_hello.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    started = time.monotonic()
    for connection in (silent, half_hello):
        connection.settimeout(10)
        assert connection.recv(1024) == b""
        connection.close()
    assert time.monotonic() - started < 5
    # The server still answers everyone else.
    assert https(port, "/", pki).status_code == 200
    assert server.get("/").status_code == 200


def test_issue_19_ssl_environment_names_the_connection(ferrule_server, mode_options, pki):
    port = free_port()
    ferrule_server(
        "environ.wsgi",
        *mode_options,
        *tls_options(
            pki,
            port,
            "--ssl-environment",
            "--ssl-ca-certificate-file",
            str(pki / "client-ca.pem"),
            "--ssl-verify-client",
            "/private",
        ),
    )
    anonymous = https(port, "/", pki).json()["environ"]
    assert anonymous["SSL_PROTOCOL"] in ("TLSv1.2", "TLSv1.3")
    assert anonymous["SSL_CIPHER"]
    assert anonymous["SSL_CLIENT_VERIFY"] == "NONE"
    assert anonymous["SSL_TLS_SNI"] == "localhost"
    assert anonymous["SSL_SERVER_M_SERIAL"]
    assert "SSL_CLIENT_S_DN" not in anonymous
    alice = https(port, "/private", pki, cert=str(pki / "alice.pem")).json()["environ"]
    assert alice["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert alice["SSL_CLIENT_S_DN_CN"] == "alice"
    assert alice["SSL_CLIENT_S_DN"].startswith("CN=alice")
    assert alice["SSL_CLIENT_I_DN_O"]
    assert alice["SSL_CLIENT_V_END"].endswith(" GMT")
    assert int(alice["SSL_CLIENT_V_REMAIN"]) > 0


def test_issue_19_client_certificates_for_a_path(ferrule_server, mode_options, pki):
    port = free_port()
    server = ferrule_server(
        "environ.wsgi",
        *mode_options,
        *tls_options(
            pki,
            port,
            "--ssl-ca-certificate-file",
            str(pki / "client-ca.pem"),
            "--ssl-verify-client",
            "/private",
        ),
    )
    assert https(port, "/public", pki).status_code == 200
    assert https(port, "/privateer", pki).status_code == 200
    refused = https(port, "/private/data", pki)
    assert refused.status_code == 403
    assert "client certificate" in refused.text
    assert https(port, "/private/data", pki, cert=str(pki / "alice.pem")).status_code == 200
    # A certificate from an authority the server does not trust ends the handshake.
    with pytest.raises(requests.exceptions.SSLError):
        https(port, "/public", pki, cert=str(pki / "mallory.pem"))
    # Over plain HTTP there is no certificate to check: refused too.
    assert server.get("/private").status_code == 403
    assert server.get("/public").status_code == 200


def test_issue_19_the_ca_file_alone_protects_the_whole_site(ferrule_server, pki):
    port = free_port()
    ferrule_server(
        "environ.wsgi",
        *tls_options(pki, port, "--ssl-ca-certificate-file", str(pki / "client-ca.pem")),
    )
    assert https(port, "/anything", pki).status_code == 403
    assert https(port, "/anything", pki, cert=str(pki / "alice.pem")).status_code == 200


def test_issue_19_https_only_and_hsts(ferrule_server, mode_options, pki):
    port = free_port()
    server = ferrule_server(
        "environ.wsgi",
        *mode_options,
        *tls_options(pki, port, "--https-only", "--hsts-policy", "max-age=600"),
    )
    plain = server.get("/a/b?c=1", allow_redirects=False)
    assert plain.status_code == 302
    assert plain.headers["Location"] == f"https://127.0.0.1:{port}/a/b?c=1"
    assert "Strict-Transport-Security" not in plain.headers
    secure = https(port, "/a/b?c=1", pki)
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"] == "max-age=600"
    # requests follows the redirect to HTTPS by itself.
    followed = requests.get(f"{server.url}/x", verify=str(pki / "ca.pem"), timeout=30)
    assert followed.status_code == 200
    assert followed.json()["environ"]["wsgi.url_scheme"] == "https"


def test_issue_19_tls_connections_close_cleanly_on_stop(ferrule_server, pki):
    port = free_port()
    server = ferrule_server("environ.wsgi", *tls_options(pki, port))
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    raw = socket.create_connection(("localhost", port))
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        received = b""
        while b"application/json" not in received:
            chunk = tls.recv(65536)
            assert chunk, "the server closed before its answer"
            received += chunk
        assert b"200 OK" in received
    assert server.stop() == 0


def test_issue_19_every_reactor_serves_https(ferrule_server, pki):
    port = free_port()
    server = ferrule_server("environ.wsgi", *tls_options(pki, port, "--reactor-threads", "2"))
    for _ in range(8):
        assert https(port, "/", pki).json()["environ"]["wsgi.url_scheme"] == "https"
        assert server.get("/").status_code == 200


def test_issue_19_debug_mode_serves_https(ferrule_server, pki):
    port = free_port()
    ferrule_server("environ.wsgi", "--debug-mode", *tls_options(pki, port))
    assert https(port, "/", pki).json()["environ"]["HTTPS"] == "1"


def test_issue_19_expect_100_continue_over_tls(ferrule_server, mode_options, pki, tmp_path):
    port = free_port()
    ferrule_server("environ.wsgi", *mode_options, *tls_options(pki, port))
    body = tmp_path / "body.bin"
    body.write_bytes(b"x" * 300_000)
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--cacert", str(pki / "ca.pem")]
        + ["-H", "Expect: 100-continue", "--data-binary", f"@{body}", "--verbose"]
        + [f"https://localhost:{port}/upload"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert b"HTTP/1.1 100 Continue" in result.stderr
    assert b'"CONTENT_LENGTH": "300000"' in result.stdout


def test_issue_19_every_embedded_process_serves_https(ferrule_server, pki):
    port = free_port()
    server = ferrule_server(
        "environ.wsgi", "--embedded-mode", "--processes", "2", *tls_options(pki, port)
    )
    wait_until(lambda: len(server.child_pids()) == 2)
    pids = {https(port, "/", pki).json()["pid"] for _ in range(20)}
    assert pids <= set(server.child_pids())


def test_issue_19_a_graceful_restart_reads_a_renewed_certificate(
    ferrule_server, mode_options, tmp_path
):
    old_ca, new_ca = trustme.CA(), trustme.CA()
    stub = tmp_path / "site"

    def install(ca):
        issued = ca.issue_cert("localhost")
        issued.private_key_pem.write_to_path(str(tmp_path / "site.key"))
        issued.cert_chain_pems[0].write_to_path(str(tmp_path / "site.crt"))

    old_ca.cert_pem.write_to_path(str(tmp_path / "old.pem"))
    new_ca.cert_pem.write_to_path(str(tmp_path / "new.pem"))
    install(old_ca)
    port = free_port()
    server = ferrule_server(
        "environ.wsgi", *mode_options, "--https-port", str(port), "--ssl-certificate", str(stub)
    )
    url = f"https://localhost:{port}/"
    assert requests.get(url, verify=str(tmp_path / "old.pem"), timeout=30).status_code == 200
    install(new_ca)
    server.signal(signal.SIGUSR1)

    def renewed():
        try:
            return requests.get(url, verify=str(tmp_path / "new.pem"), timeout=30).ok
        except requests.exceptions.SSLError:
            return False

    wait_until(renewed, 30)
    # Files that no longer load leave the certificate in place.
    (tmp_path / "site.key").write_text("gone\n")
    # The replaced process is gone (embedded mode), so that the same pids can be compared.
    wait_until(lambda: len(server.child_pids()) == 1, 30)
    pids = server.child_pids()
    server.signal(signal.SIGUSR1)
    server.wait_for_log("HTTPS goes on with the certificate it had")
    assert requests.get(url, verify=str(tmp_path / "new.pem"), timeout=30).ok
    if mode_options:
        # Embedded mode: the restart was refused; the same processes serve.
        assert server.child_pids() == pids


def test_issue_19_static_files_over_tls(ferrule_server, mode_options, pki, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "big.bin").write_bytes(bytes(index % 241 for index in range(1_500_000)))
    port = free_port()
    ferrule_server(
        "environ.wsgi", *mode_options, *tls_options(pki, port), "--url-alias", "/static", str(site)
    )
    whole = https(port, "/static/big.bin", pki)
    assert whole.content == (site / "big.bin").read_bytes()
    part = https(port, "/static/big.bin", pki, headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206
    assert part.content == (site / "big.bin").read_bytes()[1000:2000]


def test_issue_19_plain_http_to_the_https_port_gets_400(ferrule_server, mode_options, pki):
    port = free_port()
    ferrule_server("environ.wsgi", *mode_options, *tls_options(pki, port))
    answer = requests.get(f"http://127.0.0.1:{port}/", timeout=30)
    assert answer.status_code == 400
    assert "speaks HTTPS" in answer.text
    # Bytes that open a TLS record but are no handshake: the connection is closed.
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.settimeout(10)
        connection.sendall(b"\x16" + b"\x00" * 64)
        received = b""
        while chunk := connection.recv(4096):
            received += chunk
        assert b"HTTP/1.1" not in received
    assert https(port, "/", pki).status_code == 200


TLS_HANDLER = """
def handle_request(environ, start_response):
    keys = ("HTTPS", "wsgi.url_scheme", "SSL_PROTOCOL", "GREETING", "SCRIPT_NAME")
    lines = [f"{key}={environ.get(key)}" for key in keys] + ["padding " * 40] * 10
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["\\n".join(lines).encode()]
"""


def test_issue_20_features_over_tls(ferrule_server, mode_options, pki, tmp_path):
    """--add-handler, --setenv and --compress-responses over HTTPS: the handler script
    sees the TLS variables and the --setenv key, and its answer is compressed."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "page.py").write_text("page source")
    handler = tmp_path / "handler.wsgi"
    handler.write_text(TLS_HANDLER)
    port = free_port()
    ferrule_server(
        "environ.wsgi", *mode_options, *tls_options(pki, port, "--ssl-environment"),
        "--document-root", str(root), "--add-handler", ".py", str(handler),
        "--setenv", "GREETING", "hello", "--compress-responses",
    )  # fmt: skip
    response = https(port, "/page.py", pki, headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    lines = response.text.splitlines()
    assert lines[:2] == ["HTTPS=1", "wsgi.url_scheme=https"]
    assert lines[2] in ("SSL_PROTOCOL=TLSv1.2", "SSL_PROTOCOL=TLSv1.3")
    assert lines[3:5] == ["GREETING=hello", "SCRIPT_NAME=/page.py"]
    application = https(port, "/other", pki).json()["environ"]
    assert application["GREETING"] == "hello"
    assert application["HTTPS"] == "1"
