"""Responses are framed truthfully, always (issue 15): a body that disagrees with its
declared Content-Length never leaves the connection open for the client to read the next
response as this one's body; bodyless statuses carry no body and no length; a very large
item is sent whole; a failure after the first byte delivers those bytes, then cuts.

https://github.com/ferrule/ferrule/issues/15
"""

from __future__ import annotations

import pytest
import requests
from test_http import Connection, request

from conftest import decode_chunked


@pytest.fixture
def server(ferrule_server, mode_options):
    return ferrule_server("framing.wsgi", *mode_options)


def pipelined(port: int, *paths: str) -> bytes:
    return b"".join(request(port, path) for path in paths)


@pytest.mark.parametrize(
    ("path", "produced"),
    [
        ("/short-list", b"abc"),
        ("/short-tuple", b"abc"),
        ("/short-generator", b"abcde"),
        ("/short-file", b"abcdef"),
    ],
)
def test_issue_15_a_body_shorter_than_its_content_length_closes_the_connection(
    server, path, produced
):
    with Connection(server.port) as connection:
        connection.send(pipelined(server.port, path, "/exact"))
        response = connection.read_response(head_only=True)
        assert response.status == 200
        assert response.header("Content-Length") == ["10"]
        rest = connection.read_until_closed()
    # What the application produced, and nothing of the next response.
    assert rest == produced
    log = server.wait_for_log(f"GET {path}")
    assert f"declared Content-Length: 10 for GET {path} but produced {len(produced)} bytes" in log


def test_issue_15_a_list_longer_than_its_content_length_is_cut_there_and_closes(server):
    with Connection(server.port) as connection:
        connection.send(pipelined(server.port, "/long-list", "/exact"))
        response = connection.read_response()
        assert response.status == 200
        assert response.header("Connection") == ["close"]
        assert response.body == b"abc"
        assert connection.read_until_closed() == b""
    log = server.wait_for_log("GET /long-list")
    assert "declared Content-Length: 3 for GET /long-list but produced 6 bytes; sent 3 and" in log


def test_a_generator_longer_than_its_content_length_is_cut_there(server):
    # The head is gone before the excess shows; cut at the declared length, the framing
    # is right and the connection serves the next request.
    with Connection(server.port) as connection:
        connection.send(pipelined(server.port, "/long-generator", "/exact"))
        assert connection.read_response().body == b"abc"
        assert connection.read_response().body == b"ok"


def test_a_shorter_content_length_sends_part_of_a_file_and_keeps_the_connection(server):
    # mod_wsgi's documented way to send the start of a file: Content-Length limits it.
    with Connection(server.port) as connection:
        connection.send(pipelined(server.port, "/long-file", "/exact"))
        assert connection.read_response().body == b"abc"
        assert connection.read_response().body == b"ok"


def test_issue_15_an_exact_body_keeps_the_connection_open(server):
    with Connection(server.port) as connection:
        connection.send(pipelined(server.port, "/exact", "/exact"))
        assert connection.read_response().body == b"ok"
        assert connection.read_response().body == b"ok"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/no-content", 204),
        ("/no-content-with-body", 204),
        ("/not-modified", 304),
        ("/not-modified-generator", 304),
    ],
)
def test_issue_15_204_and_304_carry_no_length_no_type_and_no_body(server, path, status):
    with Connection(server.port) as connection:
        connection.send(pipelined(server.port, path, "/exact"))
        response = connection.read_response(head_only=True)
        assert response.status == status
        names = {name.lower() for name, _ in response.headers}
        assert not names & {"content-length", "transfer-encoding", "content-type"}, response
        # The next response follows at once: no body bytes were sent in between.
        following = connection.read_response()
        assert following.status == 200
        assert following.body == b"ok"
    if status == 304:
        assert response.header("ETag") == ['"v1"']


def test_issue_15_one_very_large_item_is_sent_whole(server):
    size = 100 << 20
    response = requests.get(f"{server.url}/big-item?{size}", timeout=60)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(size)
    assert len(response.content) == size
    assert response.content.count(b"x") == size


def test_issue_15_bytes_before_a_failure_reach_the_client_then_the_connection_is_cut(server):
    with Connection(server.port) as connection:
        connection.send(request(server.port, "/raise-after-bytes"))
        response = connection.read_response(head_only=True)
        assert response.header("Transfer-Encoding") == ["chunked"]
        raw = connection.read_until_closed()
    body, complete = decode_chunked(raw)
    assert body == b"the first part, the second part"
    assert not complete, "the cut body must not end with the terminating chunk"
    server.wait_for_log("RuntimeError: failure after the first bytes marker")


def test_issue_15_megabytes_before_a_failure_all_reach_the_client(server):
    with Connection(server.port, timeout=30) as connection:
        connection.send(request(server.port, "/raise-after-many-bytes"))
        connection.read_response(head_only=True)
        raw = connection.read_until_closed()
    body, complete = decode_chunked(raw)
    assert len(body) == 8 << 20
    assert not complete


def test_issue_15_bytes_before_a_failure_with_a_declared_length(server):
    with Connection(server.port) as connection:
        connection.send(request(server.port, "/raise-after-bytes-declared"))
        response = connection.read_response(head_only=True)
        assert response.header("Content-Length") == ["100"]
        assert connection.read_until_closed() == b"the first part"
    server.wait_for_log("RuntimeError: failure after the first bytes marker")
