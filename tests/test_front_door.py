"""Virtual hosts and trusted proxies (issue 19), in both modes: --server-name (other
hosts get mod_wsgi-express's 403, a www. name's parent domain is redirected to it),
--server-alias wildcards, --allow-localhost; --trust-proxy-header and --trust-proxy set
REMOTE_ADDR, wsgi.url_scheme and HTTP_HOST from a trusted peer and drop the headers
otherwise. The tests' clients are on 127.0.0.1; what a remote peer meets is in the unit
tests of src/front_door/."""

from __future__ import annotations

import socket

import requests

from conftest import start_server


def get(server, path="/", host=None, headers=None, **kwargs):
    headers = dict(headers or {})
    if host is not None:
        headers["Host"] = host
    return requests.get(
        server.url + path, headers=headers, allow_redirects=False, timeout=30, **kwargs
    )


def test_issue_19_server_name_refuses_other_hosts(ferrule_server, mode_options):
    server = ferrule_server(
        "environ.wsgi",
        *mode_options,
        "--server-name",
        "example.com",
        "--server-alias",
        "*.example.org",
    )
    served = get(server, "/", host=f"Example.com:{server.port}")
    assert served.status_code == 200
    environ = served.json()["environ"]
    # Apache lowercases the name the client asked for (UseCanonicalName Off).
    assert environ["SERVER_NAME"] == "example.com"
    assert environ["HTTP_HOST"] == f"Example.com:{server.port}"
    assert get(server, "/", host="api.example.org").status_code == 200
    # An alias matches whatever the case, port or trailing dot of Host, and the
    # application sees the name as Apache reads it.
    for host in ("API.Example.ORG", f"api.EXAMPLE.org:{server.port}", "api.example.org."):
        served = get(server, "/", host=host)
        assert served.status_code == 200, host
        assert served.json()["environ"]["SERVER_NAME"] == "api.example.org", host
    assert get(server, "/", host="EXAMPLE.COM.").status_code == 200
    refused = get(server, "/", host="other.com")
    assert refused.status_code == 403
    assert "host name" in refused.text
    assert get(server, "/", host="localhost").status_code == 403
    assert "http://example.com:" in server.stdout()


def test_issue_19_http_1_0_without_host_is_refused_with_a_server_name(ferrule_server):
    server = ferrule_server("environ.wsgi", "--server-name", "example.com")
    with socket.create_connection(("127.0.0.1", server.port)) as connection:
        connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403 ")


def test_issue_19_allow_localhost_serves_this_machine(ferrule_server, mode_options):
    server = ferrule_server(
        "environ.wsgi", *mode_options, "--server-name", "example.com", "--allow-localhost"
    )
    assert get(server, "/", host="localhost").status_code == 200
    assert get(server, "/", host=f"127.0.0.1:{server.port}").status_code == 200
    assert get(server, "/", host="anything.else").status_code == 200


def test_issue_19_the_parent_of_a_www_name_is_redirected(ferrule_server, mode_options):
    server = ferrule_server("environ.wsgi", *mode_options, "--server-name", "www.example.com")
    moved = get(server, "/a/b?c=1&d", host=f"example.com:{server.port}")
    assert moved.status_code == 301
    assert moved.headers["Location"] == f"http://www.example.com:{server.port}/a/b?c=1&d"
    assert get(server, "/", host="Example.COM").status_code == 301
    assert get(server, "/", host="www.example.com").status_code == 200


def test_issue_19_bad_front_door_options_exit_2(tmp_path):
    cases = [
        (["--server-alias", "a.example"], "--server-alias needs --server-name"),
        (["--server-name", "bad name"], "--server-name 'bad name'"),
        (["--trust-proxy-header", "Forwarded"], "--trust-proxy-header 'Forwarded'"),
        (
            ["--trust-proxy-header", "X-Forwarded-For", "--trust-proxy", "10.0.0.0/40"],
            "--trust-proxy '10.0.0.0/40'",
        ),
        (["--https-only"], "--https-only needs --https-port"),
    ]
    for options, message in cases:
        server = start_server(tmp_path, "environ.wsgi", *options, wait=False)
        assert server.process.wait(timeout=30) == 2, options
        assert message in server.stderr(), server.stderr()


PROXY_HEADERS = {
    "X-Forwarded-For": "203.0.113.9, 198.51.100.2",
    "X-Real-IP": "192.0.2.77",
    "X-Forwarded-Proto": "https",
    "X-Scheme": "http",
    "X-Forwarded-Host": "public.example",
    "X-Forwarded-Port": "443",
}

TRUSTED = (
    "--trust-proxy-header",
    "X-Forwarded-For",
    "--trust-proxy-header",
    "X-Forwarded-Proto",
    "--trust-proxy-header",
    "X-Forwarded-Host",
)


def test_issue_19_a_trusted_proxy_sets_the_client_details(ferrule_server, mode_options):
    server = ferrule_server("environ.wsgi", *mode_options, *TRUSTED, "--trust-proxy", "127.0.0.0/8")
    environ = get(server, "/", headers=PROXY_HEADERS).json()["environ"]
    # 198.51.100.2 is not a trusted proxy: it is the last hop that is not ours.
    assert environ["REMOTE_ADDR"] == "198.51.100.2"
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["HTTPS"] == "1"
    assert environ["HTTP_HOST"] == "public.example"
    # As mod_wsgi: the header is cut to start at the client it named.
    assert environ["HTTP_X_FORWARDED_FOR"] == "198.51.100.2"
    # The other headers of a trusted purpose are dropped; X-Forwarded-Port was not named.
    assert "HTTP_X_REAL_IP" not in environ
    assert "HTTP_X_SCHEME" not in environ
    assert environ["HTTP_X_FORWARDED_PORT"] == "443"
    assert environ["SERVER_PORT"] == str(server.port)


def test_issue_19_without_trust_proxy_every_peer_is_trusted(ferrule_server, mode_options):
    server = ferrule_server("environ.wsgi", *mode_options, *TRUSTED)
    environ = get(server, "/", headers=PROXY_HEADERS).json()["environ"]
    assert environ["REMOTE_ADDR"] == "203.0.113.9"
    assert environ["HTTP_X_FORWARDED_FOR"] == PROXY_HEADERS["X-Forwarded-For"]


def test_issue_19_an_untrusted_peer_loses_the_proxy_headers(ferrule_server, mode_options):
    server = ferrule_server(
        "environ.wsgi", *mode_options, *TRUSTED, "--trust-proxy", "10.0.0.0/8", "--access-log"
    )
    environ = get(server, "/", headers=PROXY_HEADERS).json()["environ"]
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    for dropped in ("FOR", "PROTO", "HOST"):
        assert f"HTTP_X_FORWARDED_{dropped}" not in environ
    assert "HTTP_X_REAL_IP" not in environ and "HTTP_X_SCHEME" not in environ
