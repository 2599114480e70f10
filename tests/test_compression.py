"""--compress-responses and --map-head-to-get through real sockets, in both modes: what
a client that accepts gzip or brotli gets (and one that does not), a stream encoded as it
streams, static files of the document root, and HEAD in all three --map-head-to-get values."""

from __future__ import annotations

import gzip
import runpy
import socket
import subprocess
import zlib

import pytest
import requests

from conftest import APPS, decode_chunked, run_ferrule

APP = APPS / "compression.wsgi"
exec_globals = runpy.run_path(str(APP))
BIG, FIRST, SECOND = exec_globals["BIG"], exec_globals["FIRST"], exec_globals["SECOND"]


def get(server, path, accept="gzip"):
    """The response with its body as sent (not decoded by the client)."""
    # None leaves the header out (requests would send its own).
    headers = {"Accept-Encoding": accept}
    response = server.get(path, headers=headers, stream=True)
    raw = response.raw.read(decode_content=False)
    return response, raw


def head_request(server, path, headers):
    return requests.head(server.url + path, headers=headers, timeout=30)


def curl(server, path, accept):
    """curl's own decoding of the body (it decodes br and gzip)."""
    result = subprocess.run(
        ["curl", "-s", "--compressed", "-H", f"Accept-Encoding: {accept}", server.url + path],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return result.stdout


@pytest.fixture
def server(ferrule_server, mode_options):
    return ferrule_server(APP, *mode_options, "--compress-responses")


def test_gzip_decodes_to_the_original_with_its_new_length(server):
    response, raw = get(server, "/big", "gzip")
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Vary"] == "Accept-Encoding"
    assert int(response.headers["Content-Length"]) == len(raw) < len(BIG) / 4
    assert gzip.decompress(raw) == BIG
    # The application saw GET for its GET (and --map-head-to-get Auto maps HEAD, below).
    assert response.headers["X-Method"] == "GET"


def test_brotli_when_the_client_weighs_it_above_gzip(server):
    response, raw = get(server, "/big", "gzip;q=0.5, br")
    assert response.headers["Content-Encoding"] == "br"
    assert int(response.headers["Content-Length"]) == len(raw) < len(BIG) / 4
    assert curl(server, "/big", "gzip;q=0.5, br") == BIG
    assert curl(server, "/json", "br").startswith(b'{"items": [0, 1, 2')


def test_equal_weights_give_gzip_and_q0_refuses(server):
    response, _ = get(server, "/big", "gzip, deflate, br")
    assert response.headers["Content-Encoding"] == "gzip"
    response, raw = get(server, "/big", "gzip;q=0, br;q=0")
    assert "Content-Encoding" not in response.headers
    assert response.headers["Vary"] == "Accept-Encoding"
    assert raw == BIG
    response, raw = get(server, "/big", "gzip;q=0")
    assert "Content-Encoding" not in response.headers
    assert raw == BIG
    response, raw = get(server, "/big", None)
    assert "Content-Encoding" not in response.headers
    assert raw == BIG


def test_what_is_not_compressed(server):
    small, raw = get(server, "/small")
    assert "Content-Encoding" not in small.headers and "Vary" not in small.headers
    assert raw == b"hello, small world\n"
    image, raw = get(server, "/image")
    assert "Content-Encoding" not in image.headers and raw == BIG
    # Already encoded by the application: sent as it is, not encoded twice.
    encoded, raw = get(server, "/encoded")
    assert encoded.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw) == BIG


def test_json_is_compressed_and_a_strong_etag_turns_weak(server):
    response, raw = get(server, "/json")
    assert response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(raw).startswith(b'{"items": [0, 1, 2')
    response, raw = get(server, "/etag")
    assert response.headers["ETag"] == 'W/"v1"'
    assert gzip.decompress(raw) == BIG
    identity, _ = get(server, "/etag", None)
    assert identity.headers["ETag"] == '"v1"'


def read_until(sock, data: bytes, done) -> bytes:
    while not done(data):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed early after {data!r}"
        data += chunk
    return data


@pytest.mark.parametrize("accept", ["gzip", "br"])
def test_a_stream_is_compressed_piece_by_piece(server, tmp_path, accept):
    """The first part arrives, compressed and decodable, while the application still
    waits for the test's file: nothing is held back until the end."""
    gate = tmp_path / f"gate-{accept}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            f"GET /stream?gate={gate} HTTP/1.1\r\nHost: x\r\n"
            f"Accept-Encoding: {accept}\r\n\r\n".encode()
        )
        data = read_until(sock, b"", lambda data: b"\r\n\r\n" in data)
        head, _, body = data.partition(b"\r\n\r\n")
        assert f"content-encoding: {accept}".encode() in head.lower()
        assert b"transfer-encoding: chunked" in head.lower()
        assert b"content-length" not in head.lower()
        if accept == "gzip":
            decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)

            def decoded_so_far(chunked):
                return decoder.decompress(decode_chunked(chunked)[0])
        else:
            decoded_so_far = None

        def first_chunk_complete(body):
            payload, _ = decode_chunked(body)
            return len(payload) > 0 and body.endswith(b"\r\n")

        body = read_until(sock, body, first_chunk_complete)
        assert not gate.exists()
        if decoded_so_far is not None:
            assert decoded_so_far(body) == FIRST
        gate.touch()
        body = read_until(sock, body, lambda body: decode_chunked(body)[1])
    payload, whole = decode_chunked(body)
    assert whole
    if accept == "gzip":
        assert gzip.decompress(payload) == FIRST + SECOND


def test_a_streamed_brotli_response_decodes_whole(server, tmp_path):
    gate = tmp_path / "open"
    gate.touch()
    assert curl(server, f"/stream?gate={gate}", "br") == FIRST + SECOND


def test_static_files_of_the_document_root_are_compressed(ferrule_server, mode_options, tmp_path):
    root = tmp_path / "htdocs"
    root.mkdir()
    (root / "site.css").write_bytes(BIG)
    (root / "tiny.css").write_bytes(b"p { margin: 0 }\n")
    server = ferrule_server(
        APP, *mode_options, "--compress-responses", "--document-root", str(root)
    )
    response, raw = get(server, "/site.css")
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.headers["ETag"].startswith('W/"')
    assert gzip.decompress(raw) == BIG
    assert curl(server, "/site.css", "br") == BIG
    # A weak tag still validates: 304.
    etag = response.headers["ETag"]
    again = server.get("/site.css", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304
    # Ranges are of the file's bytes: never compressed.
    part = server.get("/site.css", headers={"Accept-Encoding": "gzip", "Range": "bytes=0-99"})
    assert part.status_code == 206
    assert "Content-Encoding" not in part.headers
    assert part.content == BIG[:100]
    tiny, raw = get(server, "/tiny.css")
    assert "Content-Encoding" not in tiny.headers and raw == b"p { margin: 0 }\n"
    head = head_request(server, "/site.css", {"Accept-Encoding": "gzip"})
    assert head.headers["Content-Encoding"] == "gzip"
    assert "Content-Length" not in head.headers
    assert head.content == b""


@pytest.mark.parametrize(
    ("value", "compress", "seen"),
    [
        ("Off", False, "HEAD"),
        ("On", False, "GET"),
        ("auto", False, "HEAD"),
        ("Auto", True, "GET"),
        ("off", True, "HEAD"),
    ],
)
def test_map_head_to_get(ferrule_server, mode_options, value, compress, seen):
    options = ["--map-head-to-get", value] + (["--compress-responses"] if compress else [])
    server = ferrule_server(APP, *mode_options, *options)
    headers = {"Accept-Encoding": "gzip"}
    get_response, _ = get(server, "/big")
    head = head_request(server, "/big", headers)
    assert head.headers["X-Method"] == seen
    assert head.content == b""
    assert head.headers["Content-Type"] == get_response.headers["Content-Type"]
    assert head.headers.get("Content-Encoding") == get_response.headers.get("Content-Encoding")
    assert head.headers["Content-Length"] == get_response.headers["Content-Length"]
    # An application that answers HEAD with no body: no Content-Length of 0 (Apache's
    # rule), since it says nothing of the GET's.
    empty = head_request(server, "/empty-for-head", headers)
    if seen == "HEAD":
        assert "Content-Length" not in empty.headers
    else:
        assert (
            empty.headers["Content-Length"]
            == get(server, "/empty-for-head")[0].headers["Content-Length"]
        )


def test_map_head_to_get_refuses_other_values():
    result = run_ferrule("start-server", str(APP), "--map-head-to-get", "sometimes")
    assert result.returncode == 2
    assert "--map-head-to-get" in result.stderr


def test_an_http_1_0_client_gets_a_compressed_stream_until_the_close(server, tmp_path):
    """No chunked coding in HTTP/1.0: the compressed stream ends with the connection."""
    gate = tmp_path / "open"
    gate.touch()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"GET /stream?gate={gate} HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-encoding: gzip" in head.lower()
    assert b"content-length" not in head.lower()
    assert gzip.decompress(body) == FIRST + SECOND
