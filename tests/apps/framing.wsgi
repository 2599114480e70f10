"""Responses whose framing a server can get wrong, chosen by PATH_INFO, for
tests/test_framing.py: bodies that disagree with their declared Content-Length, bodyless
statuses, a very large single item, and failures after the first body byte."""

import os
import tempfile

TEXT = [("Content-Type", "text/plain")]

# A real file for wsgi.file_wrapper: 6 bytes.
FILE_PATH = os.path.join(tempfile.mkdtemp(prefix="framing-"), "six.txt")
with open(FILE_PATH, "wb") as six:
    six.write(b"abcdef")


def declared(length):
    return [*TEXT, ("Content-Length", str(length))]


def short_list(environ, start_response):
    start_response("200 OK", declared(10))
    return [b"abc"]


def long_list(environ, start_response):
    start_response("200 OK", declared(3))
    return [b"abc", b"def"]


def short_tuple(environ, start_response):
    start_response("200 OK", declared(10))
    return (b"abc",)


def short_generator(environ, start_response):
    start_response("200 OK", declared(10))
    yield b"abc"
    yield b"de"


def long_generator(environ, start_response):
    start_response("200 OK", declared(3))
    yield b"ab"
    yield b"cdef"


def short_file(environ, start_response):
    start_response("200 OK", declared(10))
    return environ["wsgi.file_wrapper"](open(FILE_PATH, "rb"))


def long_file(environ, start_response):
    start_response("200 OK", declared(3))
    return environ["wsgi.file_wrapper"](open(FILE_PATH, "rb"))


def exact(environ, start_response):
    start_response("200 OK", declared(2))
    return [b"ok"]


def no_content(environ, start_response):
    start_response("204 No Content", [*TEXT, ("Content-Length", "0")])
    return [b""]


def no_content_with_body(environ, start_response):
    start_response("204 No Content", TEXT)
    return [b"this body must not be sent"]


def not_modified(environ, start_response):
    start_response("304 Not Modified", [*TEXT, ("ETag", '"v1"')])
    return [b"this body must not be sent"]


def not_modified_generator(environ, start_response):
    start_response("304 Not Modified", [("ETag", '"v1"')])
    yield b"neither this one"


def big_item(environ, start_response):
    size = int(environ["QUERY_STRING"] or 100 << 20)
    start_response("200 OK", TEXT)
    return [b"x" * size]


def raise_after_bytes(environ, start_response):
    start_response("200 OK", TEXT)
    yield b"the first part"
    yield b", the second part"
    raise RuntimeError("failure after the first bytes marker")


def raise_after_many_bytes(environ, start_response):
    # More than a socket's buffers hold: the server is still sending when it fails.
    start_response("200 OK", TEXT)
    yield b"m" * (8 << 20)
    raise RuntimeError("failure after the first bytes marker")


def raise_after_bytes_declared(environ, start_response):
    start_response("200 OK", declared(100))
    yield b"the first part"
    raise RuntimeError("failure after the first bytes marker")


ROUTES = {
    "/short-list": short_list,
    "/long-list": long_list,
    "/short-tuple": short_tuple,
    "/short-generator": short_generator,
    "/long-generator": long_generator,
    "/short-file": short_file,
    "/long-file": long_file,
    "/exact": exact,
    "/no-content": no_content,
    "/no-content-with-body": no_content_with_body,
    "/not-modified": not_modified,
    "/not-modified-generator": not_modified_generator,
    "/big-item": big_item,
    "/raise-after-bytes": raise_after_bytes,
    "/raise-after-many-bytes": raise_after_many_bytes,
    "/raise-after-bytes-declared": raise_after_bytes_declared,
}


def application(environ, start_response):
    return ROUTES[environ["PATH_INFO"]](environ, start_response)
