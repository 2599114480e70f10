"""A static site beside the application, as mod_wsgi-express arranges it: --document-root
(files the front end serves, everything else to the application), --directory-index and
--mount-point, through real sockets in both modes."""

from __future__ import annotations

import gzip
import socket

import pytest
import requests

from conftest import APPS, run_ferrule

CSS = "body { color: red }\n"


def make_site(tmp_path):
    root = tmp_path / "htdocs"
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_text(CSS)
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<h1>docs</h1>\n")
    (root / "empty").mkdir()
    (tmp_path / "secret.txt").write_text("outside the document root\n")
    (root / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "inside.css").symlink_to(root / "css" / "site.css")
    return root


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """Sends `target` byte for byte (no client normalizing it) and returns status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1")
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_document_root_files_come_from_the_front_end(ferrule_server, mode_options, tmp_path):
    root = make_site(tmp_path)
    server = ferrule_server("environ.wsgi", *mode_options, "--document-root", str(root))
    response = server.get("/css/site.css")
    assert response.status_code == 200
    assert response.text == CSS
    assert response.headers["Content-Type"] == "text/css"
    assert response.headers["Content-Length"] == str(len(CSS))
    assert response.headers["Accept-Ranges"] == "bytes"
    etag = response.headers["ETag"]
    last_modified = response.headers["Last-Modified"]
    # Conditional requests: either validator gives 304 without a body.
    assert server.get("/css/site.css", headers={"If-None-Match": etag}).status_code == 304
    unchanged = server.get("/css/site.css", headers={"If-Modified-Since": last_modified})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert server.get("/css/site.css", headers={"If-None-Match": '"other"'}).status_code == 200
    # HEAD: the headers a GET has, no body.
    head = requests.head(server.url + "/css/site.css", timeout=30)
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(CSS))
    assert head.headers["ETag"] == etag
    assert head.content == b""
    # Anything that is not a file goes to the application, with the path it asked for.
    missing = server.get("/css/missing.css")
    assert missing.headers["Content-Type"] == "application/json"
    assert missing.json()["environ"]["PATH_INFO"] == "/css/missing.css"
    assert missing.json()["environ"]["DOCUMENT_ROOT"] == str(root)
    assert server.get("/").headers["Content-Type"] == "application/json"
    # Without --directory-index a directory is the application's too.
    assert server.get("/docs/").headers["Content-Type"] == "application/json"


def test_ranges(ferrule_server, mode_options, tmp_path):
    root = make_site(tmp_path)
    server = ferrule_server("environ.wsgi", *mode_options, "--document-root", str(root))
    part = server.get("/css/site.css", headers={"Range": "bytes=5-9"})
    assert part.status_code == 206
    assert part.content == CSS.encode()[5:10]
    assert part.headers["Content-Range"] == f"bytes 5-9/{len(CSS)}"
    assert part.headers["Content-Length"] == "5"
    tail = server.get("/css/site.css", headers={"Range": "bytes=-4"})
    assert tail.status_code == 206
    assert tail.content == CSS.encode()[-4:]
    rest = server.get("/css/site.css", headers={"Range": "bytes=10-"})
    assert rest.content == CSS.encode()[10:]
    past = server.get("/css/site.css", headers={"Range": f"bytes={len(CSS)}-"})
    assert past.status_code == 416
    assert past.headers["Content-Range"] == f"bytes */{len(CSS)}"
    # A Range whose If-Range no longer matches gets the whole, current file.
    stale = server.get("/css/site.css", headers={"Range": "bytes=0-1", "If-Range": '"old"'})
    assert stale.status_code == 200
    assert stale.text == CSS


def test_directory_index(ferrule_server, mode_options, tmp_path):
    root = make_site(tmp_path)
    server = ferrule_server(
        "environ.wsgi", *mode_options, "--document-root", str(root),
        "--directory-index", "index.html",
    )  # fmt: skip
    index = server.get("/docs/")
    assert index.status_code == 200
    assert index.text == "<h1>docs</h1>\n"
    assert index.headers["Content-Type"] == "text/html"
    # A directory named without its slash is redirected to it, as Apache's mod_dir does.
    moved = server.get("/docs?x=1", allow_redirects=False)
    assert moved.status_code == 301
    assert moved.headers["Location"].endswith("/docs/?x=1")
    # A directory without an index is not the application's (mod_wsgi-express: 403).
    assert server.get("/empty/").status_code == 403
    # Files and missing paths as before.
    assert server.get("/css/site.css").text == CSS
    assert server.get("/nothing").headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/css/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/css/%2E%2E/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "/css\\..\\..\\secret.txt",
    ],
)
def test_no_path_leaves_the_document_root(ferrule_server, tmp_path, target):
    root = make_site(tmp_path)
    server = ferrule_server("environ.wsgi", "--document-root", str(root))
    status, body = raw_get(server.port, target)
    assert b"outside the document root" not in body
    # Normalized inside the root: not a file there, so the application answers.
    assert status == 200
    assert b'"PATH_INFO"' in body


def test_encoded_slash_nul_and_symlinks_out_are_refused(ferrule_server, mode_options, tmp_path):
    root = make_site(tmp_path)
    server = ferrule_server("environ.wsgi", *mode_options, "--document-root", str(root))
    status, body = raw_get(server.port, "/..%2fsecret.txt")
    assert status == 404
    assert b"outside" not in body
    status, body = raw_get(server.port, "/css/site.css%00.txt")
    assert status == 404
    assert b"color" not in body
    # A link pointing out of the root is not followed; one pointing inside is.
    status, body = raw_get(server.port, "/escape.txt")
    assert status == 404
    assert b"outside" not in body
    assert server.get("/inside.css").text == CSS


def test_mount_point(ferrule_server, mode_options, tmp_path):
    root = make_site(tmp_path)
    server = ferrule_server(
        "environ.wsgi", *mode_options, "--document-root", str(root), "--mount-point", "/app"
    )
    environ = server.get("/app/some/path", params={"q": "1"}).json()["environ"]
    assert environ["SCRIPT_NAME"] == "/app"
    assert environ["PATH_INFO"] == "/some/path"
    assert environ["QUERY_STRING"] == "q=1"
    # The mount point itself is redirected to its URL with a final slash, as
    # mod_wsgi-express's Apache does (it makes the mount point a directory of the
    # document root, and DirectorySlash applies), whatever the method.
    for method in ("GET", "POST"):
        moved = requests.request(method, server.url + "/app?q=1", allow_redirects=False, timeout=30)
        assert moved.status_code == 301
        assert moved.headers["Location"] == "/app/?q=1"
    environ = server.get("/app").json()["environ"]
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/")
    # Outside the mount point only files are served; the rest is not the application's.
    assert server.get("/css/site.css").text == CSS
    assert server.get("/elsewhere").status_code == 404
    assert server.get("/application").status_code == 404


def test_mount_point_without_a_document_root(ferrule_server, mode_options):
    server = ferrule_server("environ.wsgi", *mode_options, "--mount-point", "shop/")
    environ = server.get("/shop/cart").json()["environ"]
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/shop", "/cart")
    assert server.get("/").status_code == 404


def test_document_root_must_be_a_directory(tmp_path):
    result = run_ferrule(
        "start-server", str(APPS / "environ.wsgi"), "--document-root", str(tmp_path / "no")
    )
    assert result.returncode == 2
    assert f"--document-root '{tmp_path / 'no'}' is not an existing directory" in result.stderr


ERRORS_APP = """
import json


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/status/"):
        start_response(path[len("/status/"):] + " App", [("Content-Type", "text/plain")])
        return [b"the application's own page"]
    if path == "/raise":
        raise RuntimeError("failed on purpose")
    seen = {key: environ[key] for key in ("REQUEST_METHOD", "PATH_INFO", "SCRIPT_NAME")}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]
"""


def errors_site(tmp_path):
    root = make_site(tmp_path)
    (root / "errors").mkdir()
    (root / "errors" / "404.html").write_text("<p>no such page</p>\n")
    (root / "errors" / "500.html").write_text("<p>our fault</p>\n")
    app = tmp_path / "errors.wsgi"
    app.write_text(ERRORS_APP)
    return root, app


def test_error_documents_answer_the_servers_errors(ferrule_server, mode_options, tmp_path):
    root, app = errors_site(tmp_path)
    server = ferrule_server(
        app, *mode_options, "--document-root", str(root), "--mount-point", "/app",
        "--limit-request-body", "10",
        "--error-document", "404", "/errors/404.html",
        "--error-document", "500", "/errors/500.html",
        "--error-document", "413", "/app/too-large",
    )  # fmt: skip
    # A file of the document root, with the status of the error.
    missing = server.get("/elsewhere")
    assert missing.status_code == 404
    assert missing.text == "<p>no such page</p>\n"
    assert missing.headers["Content-Type"] == "text/html"
    assert "ETag" not in missing.headers
    # A failing application is the server's error too, as in mod_wsgi.
    failed = server.get("/app/raise")
    assert failed.status_code == 500
    assert failed.text == "<p>our fault</p>\n"
    # A URL of the application: it is asked with GET, and the status stays.
    refused = server.post("/app/upload", data=b"x" * 100)
    assert refused.status_code == 413
    assert refused.json() == {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/too-large", "SCRIPT_NAME": "/app",
    }  # fmt: skip
    # Without --error-override the application's own error pages are its own.
    own = server.get("/app/status/404")
    assert (own.status_code, own.text) == (404, "the application's own page")
    # HEAD gets the error document's headers and no body.
    head = requests.head(server.url + "/elsewhere", timeout=30)
    assert head.status_code == 404
    assert head.headers["Content-Length"] == str(len("<p>no such page</p>\n"))
    assert head.content == b""


def test_error_override_replaces_the_applications_errors(ferrule_server, mode_options, tmp_path):
    root, app = errors_site(tmp_path)
    server = ferrule_server(
        app, *mode_options, "--document-root", str(root),
        "--error-document", "404", "/errors/404.html",
        "--error-document", "403", "/status/500",
        "--error-override",
    )  # fmt: skip
    replaced = server.get("/status/404")
    assert (replaced.status_code, replaced.text) == (404, "<p>no such page</p>\n")
    # Statuses without a document, and a document that is itself an error, change nothing.
    assert server.get("/status/410").text == "the application's own page"
    kept = server.get("/status/403")
    assert (kept.status_code, kept.text) == (403, "the application's own page")
    assert server.get("/status/200").text == "the application's own page"


def test_error_document_options_are_checked(tmp_path):
    result = run_ferrule(
        "start-server", str(APPS / "environ.wsgi"),
        "--error-document", "200", "/ok.html",
        "--error-document", "404", "missing.html",
    )  # fmt: skip
    assert result.returncode == 2
    assert "--error-document 200 '/ok.html': the status must be an error (400 to 599)" in (
        result.stderr
    )
    assert "--error-document 404 'missing.html': the URL path must start with /" in (result.stderr)


def test_directory_listing(ferrule_server, mode_options, tmp_path):
    root = make_site(tmp_path)
    (root / "empty" / "<b>&'x'.txt").write_text("odd name")
    (root / "empty" / "sub").mkdir()
    server = ferrule_server(
        "environ.wsgi", *mode_options, "--document-root", str(root),
        "--directory-index", "index.html", "--directory-listing",
    )  # fmt: skip
    listing = server.get("/empty/")
    assert listing.status_code == 200
    assert listing.headers["Content-Type"] == "text/html; charset=utf-8"
    page = listing.text
    assert "<title>Index of /empty/</title>" in page
    # Names are escaped in the text and percent-encoded in the links.
    assert '<a href="%3Cb%3E%26%27x%27.txt">&lt;b&gt;&amp;&#x27;x&#x27;.txt</a>' in page
    assert "<b>&" not in page
    assert '<a href="sub/">sub/</a>' in page
    assert '<a href="../">' in page
    # The link leads to the file.
    assert server.get("/empty/%3Cb%3E%26%27x%27.txt").text == "odd name"
    # A directory with its index still gets the index.
    assert server.get("/docs/").text == "<h1>docs</h1>\n"
    assert requests.head(server.url + "/empty/", timeout=30).content == b""


def test_mime_types_file(ferrule_server, mode_options, tmp_path):
    root = make_site(tmp_path)
    (root / "data.weird").write_text("w")
    (root / "page.HTML").write_text("<p>")
    types = tmp_path / "mime.types"
    types.write_text(
        "# Apache's format: a type, then its extensions\n"
        "application/x-weird\t\tweird wrd\n"
        "text/x-mine css\n"
        "\n"
    )
    server = ferrule_server(
        "environ.wsgi", *mode_options, "--document-root", str(root), "--mime-types", str(types)
    )
    assert server.get("/data.weird").headers["Content-Type"] == "application/x-weird"
    # The file's types come first; extensions it does not name keep the usual type.
    assert server.get("/css/site.css").headers["Content-Type"] == "text/x-mine"
    assert server.get("/page.HTML").headers["Content-Type"] == "text/html"


def test_mime_types_file_must_exist(tmp_path):
    result = run_ferrule(
        "start-server", str(APPS / "environ.wsgi"), "--mime-types", str(tmp_path / "none")
    )
    assert result.returncode == 2
    assert f"--mime-types '{tmp_path / 'none'}' is not an existing file" in result.stderr


def test_enable_sendfile_is_accepted(ferrule_server, tmp_path):
    root = make_site(tmp_path)
    server = ferrule_server("environ.wsgi", "--document-root", str(root), "--enable-sendfile")
    assert server.get("/css/site.css").text == CSS


def test_allow_override_is_refused_with_a_reason(tmp_path):
    result = run_ferrule("start-server", str(APPS / "environ.wsgi"), "--allow-override", "FileInfo")
    assert result.returncode == 2
    assert (
        "--allow-override is not supported: .htaccess files are an Apache feature with no "
        "equivalent here"
    ) in result.stderr


HANDLER = """
import json


def handle_request(environ, start_response):
    keys = ("SCRIPT_FILENAME", "SCRIPT_NAME", "PATH_INFO", "REQUEST_METHOD",
            "mod_wsgi.request_handler", "mod_wsgi.handler_script")
    report = {key: environ.get(key) for key in keys}
    with open(environ["SCRIPT_FILENAME"]) as file:
        report["content"] = file.read()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(report).encode()]


def application(environ, start_response):
    raise RuntimeError("handle_request comes first")
"""

TEMPLATE_HANDLER = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"template " + environ["SCRIPT_NAME"].encode()]
"""


def test_add_handler_serves_files_of_an_extension_through_a_script(
    ferrule_server, mode_options, tmp_path
):
    """--add-handler .py handler.wsgi: a .py file of the document root is answered by the
    handler script's handle_request (else application), with the file in SCRIPT_FILENAME
    and its URL path in SCRIPT_NAME, as mod_wsgi's WSGIHandlerScript; other files stay
    static, and what does not exist is the application's."""
    root = make_site(tmp_path)
    (root / "page.py").write_text("page source")
    (root / "UPPER.PY").write_text("upper source")
    (root / "app").mkdir()
    (root / "app" / "index.py").write_text("index source")
    (root / "card.tmpl").write_text("card")
    handler = tmp_path / "handler.wsgi"
    handler.write_text(HANDLER)
    template_handler = tmp_path / "template.wsgi"
    template_handler.write_text(TEMPLATE_HANDLER)
    server = ferrule_server(
        "environ.wsgi", *mode_options, "--document-root", str(root),
        "--directory-index", "index.py",
        "--add-handler", ".py", str(handler), "--add-handler", "tmpl", str(template_handler),
    )  # fmt: skip
    report = server.get("/page.py").json()
    assert report == {
        "SCRIPT_FILENAME": str((root / "page.py").resolve()),
        "SCRIPT_NAME": "/page.py",
        "PATH_INFO": "",
        "REQUEST_METHOD": "GET",
        "mod_wsgi.request_handler": "wsgi-resource",
        "mod_wsgi.handler_script": str(handler),
        "content": "page source",
    }
    assert server.post("/page.py", data=b"x").json()["REQUEST_METHOD"] == "POST"
    assert server.get("/UPPER.PY").json()["content"] == "upper source"
    index = server.get("/app/").json()
    assert index["SCRIPT_NAME"] == "/app/index.py"
    assert index["content"] == "index source"
    assert server.get("/card.tmpl").text == "template /card.tmpl"
    # Other files are still the front end's; a missing .py is the application's.
    assert server.get("/css/site.css").text == CSS
    missing = server.get("/missing.py").json()["environ"]
    assert missing["PATH_INFO"] == "/missing.py"
    assert missing["mod_wsgi.request_handler"] == "wsgi-script"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--add-handler", ".py", "HANDLER"], "give --document-root"),
        (["--document-root", "ROOT", "--add-handler", ".py", "MISSING"], "not an existing file"),
        (["--document-root", "ROOT", "--add-handler", ".", "HANDLER"], "a name such as .py"),
    ],
)
def test_add_handler_is_checked_at_start_up(tmp_path, arguments, message):
    root = make_site(tmp_path)
    handler = tmp_path / "handler.wsgi"
    handler.write_text(HANDLER)
    names = {"HANDLER": str(handler), "ROOT": str(root), "MISSING": str(tmp_path / "no.wsgi")}
    arguments = [names.get(argument, argument) for argument in arguments]
    result = run_ferrule("start-server", str(APPS / "environ.wsgi"), *arguments)
    assert result.returncode == 2
    assert "--add-handler" in result.stderr and message in result.stderr


SITE_APP = """
def application(environ, start_response):
    if environ["PATH_INFO"] == "/fail":
        raise RuntimeError("the application failed")
    start_response("200 OK", [("Content-Type", "text/html")])
    return [b"<p>from the application</p>" * 100]
"""


def test_the_documented_site(ferrule_server, mode_options, tmp_path):
    """The example at the top of docs/static.md, as it is written there."""
    site = tmp_path / "site"
    (site / "css").mkdir(parents=True)
    (site / "errors").mkdir()
    home = b"<h1>home</h1>" + b"<p>welcome</p>" * 200
    stylesheet = b"body { color: red }\n" * 100
    (site / "index.html").write_bytes(home)
    (site / "css" / "site.css").write_bytes(stylesheet)
    (site / "errors" / "404.html").write_text("<h1>we lost it</h1>")
    (site / "errors" / "500.html").write_text("<h1>our fault</h1>")
    app = tmp_path / "app.wsgi"
    app.write_text(SITE_APP)
    server = ferrule_server(
        app, *mode_options, "--document-root", str(site),
        "--directory-index", "index.html", "--mount-point", "/app",
        "--error-document", "404", "/errors/404.html",
        "--error-document", "500", "/errors/500.html",
        "--compress-responses",
    )  # fmt: skip
    gzip_only = {"Accept-Encoding": "gzip"}
    for path, content in [("/", home), ("/css/site.css", stylesheet)]:
        response = server.get(path, headers=gzip_only, stream=True)
        assert response.status_code == 200
        assert response.headers["Content-Encoding"] == "gzip"
        assert response.headers["Vary"] == "Accept-Encoding"
        assert gzip.decompress(response.raw.read(decode_content=False)) == content
        etag = response.headers["ETag"]
        assert etag.startswith('W/"')
        again = server.get(path, headers={**gzip_only, "If-None-Match": etag})
        assert again.status_code == 304
    from_app = server.get("/app/page", headers=gzip_only)
    assert from_app.headers["Content-Encoding"] == "gzip"
    assert from_app.text == "<p>from the application</p>" * 100
    lost = server.get("/nowhere")
    assert (lost.status_code, lost.text) == (404, "<h1>we lost it</h1>")
    failed = server.get("/app/fail")
    assert (failed.status_code, failed.text) == (500, "<h1>our fault</h1>")
    head = requests.head(server.url + "/app/page", headers=gzip_only, timeout=30)
    assert head.headers["Content-Length"] == from_app.headers["Content-Length"]
