"""--limit-request-body (mod_wsgi-express's name and default, Apache's LimitRequestBody):
a request that declares a larger body gets 413 before the application runs; a chunked body
that grows past the limit fails the application's read. --chunked-request is accepted
(chunked bodies are always on here). Issue 17, "Strict, as RFC 9112 and 9110 ask".
"""

from __future__ import annotations

import pytest
import requests
from test_http import Connection

LIMIT = 1000


@pytest.fixture
def markers(tmp_path):
    directory = tmp_path / "markers"
    directory.mkdir()
    return directory


@pytest.fixture
def limited(ferrule_server, mode_options, markers):
    return ferrule_server(
        "lifetimes.wsgi",
        *mode_options,
        "--limit-request-body", str(LIMIT),
        env={"LIFETIMES_MARKER_DIR": str(markers)},
    )  # fmt: skip


def test_a_declared_body_over_the_limit_gets_413_before_the_application_runs(limited, markers):
    response = limited.post("/sleep?seconds=0&tag=big", data=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert "--limit-request-body" in response.text
    assert not (markers / "big.started").exists()
    # The server carries on.
    assert limited.get("/pid").status_code == 200


def test_a_body_at_the_limit_is_accepted(limited, markers):
    response = limited.post("/sleep?seconds=0&tag=fits", data=b"x" * LIMIT)
    assert response.status_code == 200
    assert (markers / "fits.done").exists()


def test_the_default_limit_is_ten_mib(ferrule_server, mode_options):
    server = ferrule_server("input.wsgi", *mode_options)
    with Connection(server.port) as connection:
        # Only the head: the answer comes before any of the body is sent.
        connection.send(b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 10485761\r\n\r\n")
        assert connection.read_response().status == 413
    with Connection(server.port) as connection:
        connection.send(b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n")
        connection.send(b"y" * 10485760)
        assert connection.read_response().status == 200


def test_a_chunked_body_past_the_limit_fails_the_applications_read(ferrule_server, mode_options):
    server = ferrule_server("input.wsgi", *mode_options, "--limit-request-body", str(LIMIT))

    def blocks():
        for _ in range(4):
            yield b"z" * 600

    response = requests.post(f"{server.url}/read", data=blocks(), timeout=30)
    assert response.status_code == 500
    server.wait_for_log("larger than --limit-request-body")
    # A chunked body within the limit is read whole.
    response = requests.post(f"{server.url}/read", data=iter([b"z" * 600]), timeout=30)
    assert response.status_code == 200
    assert response.json()["length"] == 600


def test_zero_accepts_any_size_and_chunked_request_is_accepted(ferrule_server):
    server = ferrule_server(
        "input.wsgi", "--embedded-mode", "--limit-request-body", "0", "--chunked-request"
    )
    body = b"w" * (LIMIT * 20_000)
    response = requests.post(f"{server.url}/read", data=iter([body]), timeout=60)
    assert response.status_code == 200
    assert response.json()["length"] == len(body)


@pytest.fixture
def server(ferrule_server, mode_options):
    return ferrule_server("environ.wsgi", *mode_options)


def exchange(port: int, head: bytes):
    with Connection(port) as connection:
        connection.send(head)
        return connection.read_response()


def test_a_request_line_past_8_kib_gets_414(server):
    long_path = "/" + "a" * 8200
    head = f"GET {long_path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    response = exchange(server.port, head)
    assert response.status == 414
    assert (
        exchange(server.port, b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: x\r\n\r\n").status
        == 200
    )


def test_a_header_field_past_8_kib_gets_431(server):
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 8200 + b"\r\n\r\n"
    assert exchange(server.port, head).status == 431
    fits = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 8000 + b"\r\n\r\n"
    assert exchange(server.port, fits).status == 200


def test_more_than_100_header_fields_get_431(server):
    fields = b"".join(b"X-F%d: v\r\n" % index for index in range(100))
    assert exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n").status == 431
    fields = b"".join(b"X-F%d: v\r\n" % index for index in range(98))
    assert exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n").status == 200


def test_a_slow_request_body_does_not_hold_the_only_application_thread(
    ferrule_server, mode_options
):
    # Issue 17, "Slow clients never hold a Python thread": a body within
    # --request-buffer-size is read by the front end before a thread takes the request.
    server = ferrule_server("input.wsgi", *mode_options, "--threads", "1")
    body = b"s" * 100_000
    with Connection(server.port, timeout=10) as slow:
        slow.send(
            b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body[:50_000]
        )
        # The client stalls mid-body; the one application thread is free for others.
        assert requests.get(f"{server.url}/read", timeout=5).status_code == 200
        slow.send(body[50_000:])
        response = slow.read_response()
        assert response.status == 200
        assert response.json()["length"] == len(body)
