"""sized: GET answers `?size=N` bytes (13 by default); POST reads the whole body, answers its length.

`&chunk=C` yields the body from a generator in pieces of C bytes instead of one list item.
The target of bench/slow_clients: probes GET the 13-byte default, a slow reader asks for a
body larger than the kernel's socket buffers hold, a slow sender needs a POST that is read.
"""

from urllib.parse import parse_qs

HELLO = b"Hello, world!"
# A bound, so that a stray request cannot make the server build a huge body.
MAX_SIZE = 16 * 1024 * 1024


def application(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    chunk = 0
    if environ["REQUEST_METHOD"] == "POST":
        body = str(read_all(environ)).encode()
    else:
        size = min(number(query, "size", len(HELLO)), MAX_SIZE)
        body = HELLO if size == len(HELLO) else b"x" * size
        chunk = number(query, "chunk", 0)
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
    )
    if chunk > 0:
        return (body[i : i + chunk] for i in range(0, len(body), chunk))
    return [body]


def number(query: dict, name: str, default: int) -> int:
    try:
        return max(0, int(query.get(name, [str(default)])[0]))
    except ValueError:
        return default


def read_all(environ) -> int:
    stream = environ["wsgi.input"]
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    total = 0
    while remaining > 0:
        data = stream.read(min(remaining, 65536))
        if not data:
            break
        total += len(data)
        remaining -= len(data)
    return total
