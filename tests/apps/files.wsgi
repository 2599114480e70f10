"""Sends the file named by the query string through wsgi.file_wrapper."""

from urllib.parse import parse_qs


def application(environ, start_response):
    query = parse_qs(environ["QUERY_STRING"])
    handle = open(query["path"][0], "rb")  # noqa: SIM115 - the server closes it
    handle.seek(int(query.get("offset", ["0"])[0]))
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](handle, 65536)
