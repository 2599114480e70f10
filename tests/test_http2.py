"""HTTP/2 (issue 19, --http2): h2 by ALPN on the HTTPS port, h2c with prior knowledge on
the plain port, in both modes. Clients: curl (--http2, --http2-prior-knowledge), httpx
with its h2 support (many streams on one connection), raw frames (HPACK by the h2
library) for what a client library hides (GOAWAY, PING), openssl s_client for ALPN.
Certificates are made with trustme."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import socket
import ssl
import subprocess

import h2.config
import h2.connection
import httpx
import pytest
import requests
import trustme

from conftest import free_port, wait_until

APP = "http2.wsgi"
MEGABYTE = bytes(range(256)) * 4096


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    server.private_key_pem.write_to_path(str(folder / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(folder / "server.crt"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    return folder


def start(ferrule_server, pki, *options: str, http2: bool = True):
    """A server with HTTPS beside HTTP; returns it and its HTTPS port."""
    tls_port = free_port()
    more = ["--https-port", str(tls_port), "--ssl-certificate", str(pki / "server")]
    if http2:
        more.append("--http2")
    return ferrule_server(APP, *options, *more), tls_port


def curl(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["curl", "--silent", "--show-error", *arguments],
        capture_output=True,
        timeout=60,
        check=False,
    )


def h2_client(pki, **kwargs) -> httpx.Client:
    """An httpx client that speaks HTTP/2 only: ALPN h2 on https://, prior knowledge on
    http://."""
    return httpx.Client(http1=False, http2=True, verify=trusting(pki), timeout=60, **kwargs)


def trusting(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki / "ca.pem"))


def test_curl_gets_http2_over_tls_by_alpn(ferrule_server, mode_options, pki):
    server, tls_port = start(ferrule_server, pki, *mode_options, "--access-log")
    url = f"https://localhost:{tls_port}"
    result = curl(
        "--http2", "--cacert", str(pki / "ca.pem"), "-w", "\n%{http_version}", f"{url}/hello"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, HTTP/2!\n\n2"
    # HEAD: the GET's headers, no body; a 404 of the application.
    head = curl("--http2", "--cacert", str(pki / "ca.pem"), "--head", f"{url}/hello")
    assert head.stdout.startswith(b"HTTP/2 200"), head.stdout
    assert b"content-type: text/plain" in head.stdout
    missing = curl(
        "--http2", "--cacert", str(pki / "ca.pem"), "-w", "%{http_code}", f"{url}/missing"
    )
    assert missing.stdout == b"no such workload\n404"
    # The access log writes the protocol as Apache does.
    log = wait_until(
        lambda: (
            (server.server_root / "access_log").exists()
            and (server.server_root / "access_log").read_text().count("HTTP/2.0") >= 3
            and (server.server_root / "access_log").read_text()
        )
    )
    assert '"GET /hello HTTP/2.0" 200 15' in log
    assert '"HEAD /hello HTTP/2.0" 200' in log
    assert '"GET /missing HTTP/2.0" 404' in log


def test_curl_h2c_with_prior_knowledge_sees_the_environ(ferrule_server, mode_options, pki):
    server, _ = start(ferrule_server, pki, *mode_options)
    result = curl(
        "--http2-prior-knowledge",
        "-w",
        "\n%{http_version}",
        "-H",
        "Cookie: a=1",
        "-H",
        "Cookie: b=2",
        f"{server.url}/environ?x=1&y=%20two",
    )
    assert result.returncode == 0, result.stderr
    body, version = result.stdout.rsplit(b"\n", 1)
    assert version == b"2"
    environ = httpx.Response(200, content=body).json()
    assert environ["SERVER_PROTOCOL"] == "HTTP/2.0"
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["PATH_INFO"] == "/environ"
    assert environ["QUERY_STRING"] == "x=1&y=%20two"
    assert environ["REQUEST_URI"] == "/environ?x=1&y=%20two"
    # curl sends no Host on HTTP/2: :authority stands for it.
    assert environ["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert environ["wsgi.url_scheme"] == "http"
    # Cookies split over several fields reach the application as one (RFC 9113 8.2.3).
    assert environ["HTTP_COOKIE"] == "a=1; b=2"


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_every_workload_over_h2_and_h2c(ferrule_server, mode_options, pki, tmp_path, scheme):
    server, tls_port = start(ferrule_server, pki, *mode_options)
    url = f"https://localhost:{tls_port}" if scheme == "https" else server.url
    big = tmp_path / "file.bin"
    big.write_bytes(bytes(index % 251 for index in range(2 * 1024 * 1024 + 7)))
    upload = bytes(index % 241 for index in range(5 * 1024 * 1024))
    with h2_client(pki) as client:
        hello = client.get(f"{url}/hello")
        assert hello.http_version == "HTTP/2"
        assert (hello.status_code, hello.text) == (200, "Hello, HTTP/2!\n")
        assert hello.headers["content-length"] == "15"
        assert "connection" not in hello.headers
        large = client.get(f"{url}/large")
        assert large.content == MEGABYTE
        streamed = client.get(f"{url}/stream")
        assert streamed.text == "".join(f"chunk {index}\n" for index in range(100))
        # wsgi.file_wrapper: sendfile on HTTP/1 plain connections, bytes on HTTP/2.
        file = client.get(f"{url}/file?{big}")
        assert file.content == big.read_bytes()
        posted = client.post(f"{url}/upload", content=upload)
        assert posted.json() == {"sha256": hashlib.sha256(upload).hexdigest(), "size": len(upload)}
        # A body of unknown length (no content-length on the stream).
        chunked = client.post(f"{url}/upload", content=iter([upload[:1000], upload[1000:3000]]))
        assert chunked.json()["size"] == 3000
        head = client.head(f"{url}/large")
        assert (head.status_code, head.content) == (200, b"")
        assert client.get(f"{url}/missing").status_code == 404
        failed = client.get(f"{url}/error")
        assert failed.status_code == 500
        headers = {f"x-test-{index}": f"value {index}" for index in range(60)}
        environ = client.get(f"{url}/environ?a=b", headers=headers).json()
        assert all(environ[f"HTTP_X_TEST_{index}"] == f"value {index}" for index in range(60))
        assert environ["SERVER_PROTOCOL"] == "HTTP/2.0"
        assert environ["QUERY_STRING"] == "a=b"
        assert environ["wsgi.url_scheme"] == scheme
        expected_host = f"localhost:{tls_port}" if scheme == "https" else f"127.0.0.1:{server.port}"
        assert environ["HTTP_HOST"] == expected_host
    assert "the application failed on purpose" in server.wait_for_log("on purpose")


def test_two_hundred_streams_at_once_on_one_connection(ferrule_server, mode_options, pki):
    server, tls_port = start(ferrule_server, pki, *mode_options, "--threads", "4")

    async def fetch_all(url: str):
        async with httpx.AsyncClient(
            http1=False, http2=True, verify=trusting(pki), timeout=60
        ) as client:
            return await asyncio.gather(
                *(client.get(f"{url}/environ?n={index}") for index in range(200))
            )

    for url in (f"https://localhost:{tls_port}", server.url):
        responses = asyncio.run(fetch_all(url))
        assert [response.status_code for response in responses] == [200] * 200
        seen = [response.json() for response in responses]
        assert [environ["QUERY_STRING"] for environ in seen] == [f"n={i}" for i in range(200)]
        # One connection carried them all; four threads ran them.
        assert len({environ["REMOTE_PORT"] for environ in seen}) == 1
        assert len({(environ["pid"], environ["thread"]) for environ in seen}) <= 4


def test_without_http2_nothing_changes(ferrule_server, mode_options, pki):
    server, tls_port = start(ferrule_server, pki, *mode_options, http2=False)
    result = curl(
        "--http2",
        "--cacert",
        str(pki / "ca.pem"),
        "-w",
        "\n%{http_version}",
        f"https://localhost:{tls_port}/hello",
    )
    assert result.stdout == b"Hello, HTTP/2!\n\n1.1"
    alpn = s_client_alpn(tls_port)
    assert b"ALPN protocol: http/1.1" in alpn.stdout
    # The preface is a request of an unsupported version, and the connection closes.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        answer = read_to_end(connection)
    assert answer.startswith(b"HTTP/1.1 505 ")


def test_with_http2_alpn_prefers_h2_and_http1_still_works(ferrule_server, pki):
    server, tls_port = start(ferrule_server, pki)
    assert b"ALPN protocol: h2" in s_client_alpn(tls_port).stdout
    assert requests.get(f"{server.url}/hello", timeout=30).text == "Hello, HTTP/2!\n"
    secure = requests.get(
        f"https://localhost:{tls_port}/environ", verify=str(pki / "ca.pem"), timeout=30
    )
    assert secure.json()["SERVER_PROTOCOL"] == "HTTP/1.1"
    plain = requests.get(f"{server.url}/environ", timeout=30).json()
    assert plain["SERVER_PROTOCOL"] == "HTTP/1.1"
    # Upgrade: h2c is not supported: the request is answered over HTTP/1.1.
    upgrade = curl("--http2", "-i", f"{server.url}/hello")
    assert upgrade.stdout.startswith(b"HTTP/1.1 200 OK\r\n"), upgrade.stdout
    assert upgrade.stdout.endswith(b"Hello, HTTP/2!\n")


def s_client_alpn(port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-alpn", "h2,http/1.1"],
        input=b"",
        capture_output=True,
        timeout=30,
        check=False,
    )


def read_to_end(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_limits_hold_on_http2(ferrule_server, mode_options, pki):
    server, _ = start(ferrule_server, pki, *mode_options, "--limit-request-body", "10000")
    with h2_client(pki) as client:
        too_big = client.post(f"{server.url}/upload", content=b"x" * 20000)
        assert too_big.status_code == 413
        # Undeclared length: past the limit the application's read fails, as on HTTP/1.
        streamed = client.post(f"{server.url}/upload", content=iter([b"x" * 8000] * 3))
        assert streamed.status_code == 500
        server.wait_for_log("larger than --limit-request-body")
        assert client.post(f"{server.url}/upload", content=b"x" * 100).json()["size"] == 100
        many = {f"x-field-{index}": "v" for index in range(101)}
        assert client.get(f"{server.url}/hello", headers=many).status_code == 431
        long = {"x-long": "v" * 9000}
        assert client.get(f"{server.url}/hello", headers=long).status_code == 431
        # Cookie crumbs are one field, as they would be on HTTP/1.1.
        crumbs = [("cookie", f"c{index}=v") for index in range(150)]
        environ = client.get(f"{server.url}/environ", headers=crumbs).json()
        assert environ["HTTP_COOKIE"] == "; ".join(f"c{index}=v" for index in range(150))
        # The connection goes on after each refusal.
        assert client.get(f"{server.url}/hello").status_code == 200


def test_operations_pages_answer_over_http2(ferrule_server, pki):
    server, _ = start(
        ferrule_server, pki, "--health-check-path", "/healthz", "--metrics-path", "/metrics"
    )
    with h2_client(pki) as client:
        assert client.get(f"{server.url}/hello").status_code == 200
        assert client.get(f"{server.url}/healthz").status_code == 200
        metrics = client.get(f"{server.url}/metrics").text
    assert 'method="GET"' in metrics


def h2c_request(port: int, path: str, *headers: tuple[str, str]) -> socket.socket:
    """A raw h2c connection with one GET sent (HPACK by the h2 library); what comes back
    is read frame by frame with `frames`, so that nothing hides GOAWAY or PING."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=15)
    protocol = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    protocol.initiate_connection()
    protocol.send_headers(
        1,
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{port}"),
            (":path", path),
            *headers,
        ],
        end_stream=True,
    )
    connection.sendall(protocol.data_to_send())
    return connection


DATA, HEADERS, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x4, 0x6, 0x7


def frames(connection: socket.socket, answer_pings: bool):
    """Yields (type, flags, stream, payload) until the server closes the connection;
    acknowledges SETTINGS, and PING when asked to."""
    buffered = b""
    while True:
        while len(buffered) >= 9 and len(buffered) >= 9 + int.from_bytes(buffered[:3], "big"):
            length = int.from_bytes(buffered[:3], "big")
            kind, flags = buffered[3], buffered[4]
            stream = int.from_bytes(buffered[5:9], "big") & 0x7FFFFFFF
            payload = buffered[9 : 9 + length]
            buffered = buffered[9 + length :]
            if kind == SETTINGS and not flags & 1:
                connection.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")
            if kind == PING and not flags & 1 and answer_pings:
                connection.sendall(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)
            yield kind, flags, stream, payload
        chunk = connection.recv(65536)
        if not chunk:
            return
        buffered += chunk


def goaways(seen) -> list[tuple[int, int]]:
    """(last stream id, error code) of each GOAWAY frame."""
    return [
        (int.from_bytes(payload[:4], "big") & 0x7FFFFFFF, int.from_bytes(payload[4:8], "big"))
        for kind, _, _, payload in seen
        if kind == GOAWAY
    ]


def body_of(seen, stream: int) -> bytes:
    return b"".join(payload for kind, _, s, payload in seen if kind == DATA and s == stream)


@pytest.mark.parametrize("answer_pings", [True, False])
def test_an_idle_h2c_connection_gets_goaway(ferrule_server, pki, answer_pings):
    # The header timeout (for the first request) is longer than the socket's: only the
    # keep-alive timeout, counted from the end of the stream, can close it in time.
    server, _ = start(ferrule_server, pki, "--keep-alive-timeout", "1", "--header-timeout", "60")
    with h2c_request(server.port, "/hello") as connection:
        seen = list(frames(connection, answer_pings))
    assert body_of(seen, 1) == b"Hello, HTTP/2!\n"
    # GOAWAY after --keep-alive-timeout: at once "no new streams" (2^31-1), and once the
    # client answered the ping, the last stream served; a client that does not answer is
    # closed on anyway.
    assert goaways(seen)[0] == (2**31 - 1, 0)
    if answer_pings:
        assert goaways(seen)[-1] == (1, 0)


def test_sigterm_lets_streams_in_flight_finish(ferrule_server, mode_options, pki, tmp_path):
    server, _ = start(ferrule_server, pki, *mode_options)
    marker = tmp_path / "started"
    with h2c_request(server.port, "/slow?1.5", ("x-marker", str(marker))) as connection:
        wait_until(marker.exists)
        server.signal(signal.SIGTERM)
        seen = list(frames(connection, answer_pings=True))
    assert body_of(seen, 1) == b"slept\n"
    assert goaways(seen)[-1] == (1, 0)
    assert server.process.wait(30) == 0


def test_graceful_restart_ends_embedded_h2_connections_with_goaway(ferrule_server, pki, tmp_path):
    # Embedded mode: SIGHUP replaces the server processes, which stop serving their
    # connections; the daemon-mode front end keeps its connections through a restart.
    server, _ = start(ferrule_server, pki, "--embedded-mode")
    marker = tmp_path / "started"
    with h2c_request(server.port, "/slow?1.5", ("x-marker", str(marker))) as connection:
        wait_until(marker.exists)
        server.signal(signal.SIGHUP)
        seen = list(frames(connection, answer_pings=True))
    assert body_of(seen, 1) == b"slept\n"
    assert goaways(seen)[-1] == (1, 0)
    # The new processes serve HTTP/2.
    again = curl("--http2-prior-knowledge", "-w", "%{http_version}", f"{server.url}/hello")
    assert again.stdout == b"Hello, HTTP/2!\n2"


def test_a_client_that_reads_nothing_is_closed_after_the_socket_timeout(ferrule_server, pki):
    server, _ = start(
        ferrule_server,
        pki,
        "--embedded-mode",
        "--response-socket-timeout",
        "1",
        "--metrics-path",
        "/metrics",
    )

    def open_connections() -> int:
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        line = next(ln for ln in metrics.splitlines() if ln.startswith("ferrule_connections_open"))
        return int(float(line.split()[-1]))

    # The response is larger than the client's window; the client never reads it, nor the
    # server's ping.
    with h2c_request(server.port, "/large") as connection:
        assert wait_until(lambda: open_connections() == 2)
        # Closed (the metrics request's own connection is the one left open).
        assert wait_until(lambda: open_connections() == 1, timeout=15)
        received = b""
        try:
            while chunk := connection.recv(1 << 20):
                received += chunk
        except ConnectionResetError:
            pass
    assert len(received) < len(MEGABYTE)
