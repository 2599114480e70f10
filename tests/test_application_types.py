"""--application-type script | module | paste | static, --entry-point and --url-alias,
with real applications (Flask, a PasteDeploy pipeline) through real sockets."""

from __future__ import annotations

import email.utils
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import requests

from conftest import APPS, run_ferrule

FLASK = APPS / "flask_site"
PASTE = APPS / "paste_site"


def make_package(tmp_path):
    package = tmp_path / "mysite"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "wsgi.py").write_text(
        "def respond(text):\n"
        "    def app(environ, start_response):\n"
        "        start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "        return [text.encode()]\n"
        "    return app\n"
        "application = respond('the default callable')\n"
        "other = respond('the named callable')\n"
    )
    return tmp_path


def test_module_is_imported_from_the_working_directory(ferrule_server, mode_options, tmp_path):
    home = make_package(tmp_path)
    server = ferrule_server(
        None, *mode_options, "--application-type", "module", "--entry-point", "mysite.wsgi",
        "--working-directory", str(home),
    )  # fmt: skip
    assert server.get("/").text == "the default callable"


def test_module_colon_names_the_callable(ferrule_server, tmp_path):
    home = make_package(tmp_path)
    server = ferrule_server(
        None, "--application-type", "module", "--entry-point", "mysite.wsgi:other",
        "--working-directory", str(home),
    )  # fmt: skip
    assert server.get("/").text == "the named callable"


def test_entry_point_wins_over_the_argument(ferrule_server, tmp_path):
    home = make_package(tmp_path)
    server = ferrule_server(
        "no.such.module", "--application-type", "module", "--entry-point", "mysite.wsgi",
        "--working-directory", str(home),
    )  # fmt: skip
    assert server.get("/").text == "the default callable"


def test_flask_app_served_as_a_module(ferrule_server, mode_options):
    server = ferrule_server(
        None, *mode_options, "--application-type", "module", "--entry-point", "app:app",
        "--working-directory", str(FLASK),
    )  # fmt: skip
    assert server.get("/items/7?q=x").json() == {"id": 7, "query": "x"}
    assert server.post("/echo", json={"a": [1, 2]}).json() == {"received": {"a": [1, 2]}}
    assert server.get("/nowhere").status_code == 404


def test_flask_app_served_as_a_script(ferrule_server, mode_options):
    server = ferrule_server(FLASK / "flask.wsgi", *mode_options)
    assert server.get("/items/3").json() == {"id": 3, "query": None}


def test_paste_pipeline_with_a_filter(ferrule_server, mode_options):
    server = ferrule_server(
        PASTE / "site.ini", *mode_options, "--application-type", "paste",
        "--working-directory", str(PASTE),
    )  # fmt: skip
    response = server.get("/")
    assert response.status_code == 200
    assert response.text == f"hello from {PASTE}"
    assert response.headers["X-Tag"] == "from-the-filter"


def test_module_that_fails_to_import_stops_startup(ferrule_server, tmp_path):
    server = ferrule_server(
        None, "--application-type", "module", "--entry-point", "missing_module_xyz",
        "--log-to-terminal", wait=False,
    )  # fmt: skip
    assert server.process.wait(30) == 3
    assert "failed to import the module 'missing_module_xyz'" in server.stderr()
    assert "ModuleNotFoundError" in server.stderr()


def test_bad_module_name_is_refused_at_startup():
    result = run_ferrule("start-server", "--application-type", "module", "not a/module")
    assert result.returncode == 2
    assert "'not a/module' is not a module name" in result.stderr


def make_site(tmp_path):
    site = tmp_path / "site"
    (site / "css").mkdir(parents=True)
    (site / "index.html").write_text("<h1>home</h1>")
    (site / "css" / "site.css").write_text("body { color: red }")
    return site


def test_static_site_is_served_without_python(ferrule_server, tmp_path):
    site = make_site(tmp_path)
    server = ferrule_server(site, "--application-type", "static")
    home = server.get("/")
    assert home.text == "<h1>home</h1>"
    assert home.headers["Content-Type"] == "text/html"
    css = server.get("/css/site.css")
    assert css.headers["Content-Type"] == "text/css"
    assert css.text == "body { color: red }"
    assert server.get("/css/missing.css").status_code == 404
    assert server.get("/css/").status_code == 403
    assert server.post("/css/site.css").status_code == 405
    # No process runs Python for a static site.
    assert server.child_pids() == []


def test_static_files_answer_if_modified_since(ferrule_server, tmp_path):
    site = make_site(tmp_path)
    server = ferrule_server(site, "--application-type", "static")
    first = server.get("/css/site.css")
    again = server.get(
        "/css/site.css", headers={"If-Modified-Since": first.headers["Last-Modified"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    older = email.utils.formatdate(time.time() - 3600 * 24 * 365, usegmt=True)
    assert server.get("/css/site.css", headers={"If-Modified-Since": older}).status_code == 200


def test_url_alias_serves_files_beside_the_application(ferrule_server, mode_options, tmp_path):
    site = make_site(tmp_path)
    server = ferrule_server(
        "environ.wsgi", *mode_options, "--url-alias", "/static", str(site / "css"),
        "--url-alias", "/favicon.css", str(site / "css" / "site.css"),
    )  # fmt: skip
    assert server.get("/static/site.css").text == "body { color: red }"
    assert server.get("/favicon.css").text == "body { color: red }"
    head = requests.head(server.url + "/static/site.css", timeout=30)
    assert head.headers["Content-Length"] == str(len("body { color: red }"))
    assert head.content == b""
    # Everything else reaches the application.
    assert server.get("/statically").headers["Content-Type"] == "application/json"


def test_url_alias_to_a_missing_path_is_refused(tmp_path):
    result = run_ferrule(
        "start-server", str(APPS / "environ.wsgi"), "--url-alias", "/static", str(tmp_path / "x")
    )
    assert result.returncode == 2
    assert f"--url-alias /static '{tmp_path / 'x'}': the file or directory does not exist" in (
        result.stderr
    )


def test_missing_pastedeploy_is_one_clear_line(tmp_path):
    # A virtualenv with ferrule importable but no PasteDeploy in it.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = next((venv / "lib").glob("python*/site-packages"))
    package_root = Path(__import__("ferrule").__file__).resolve().parent.parent
    (site_packages / "ferrule-under-test.pth").write_text(f"{package_root}\n")
    assert sysconfig.get_paths()["purelib"] != str(site_packages)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "ferrule", "start-server",
         "--application-type", "paste", str(PASTE / "site.ini"), "--log-to-terminal",
         "--port", "0", "--server-root", str(tmp_path / "root")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "--application-type paste needs PasteDeploy, which is not installed" in result.stderr
    assert "hint: pip install PasteDeploy" in result.stderr


def test_static_site_honours_directory_index_and_listing(ferrule_server, tmp_path):
    """mod_wsgi-express makes a static site its document root: --directory-index names the
    file a directory serves (Apache's index.html without it), --directory-listing lists a
    directory without one."""
    site = make_site(tmp_path)
    (site / "home.htm").write_text("<h1>the other index</h1>")
    (site / "docs").mkdir()
    (site / "docs" / "a b.txt").write_text("a file")
    server = ferrule_server(site, "--application-type", "static", "--directory-index", "home.htm")
    assert server.get("/").text == "<h1>the other index</h1>"
    assert server.get("/docs/").status_code == 403
    listed = ferrule_server(
        site, "--application-type", "static", "--directory-index", "home.htm",
        "--directory-listing",
    )  # fmt: skip
    assert listed.get("/").text == "<h1>the other index</h1>"
    listing = listed.get("/docs/")
    assert listing.status_code == 200
    assert 'href="a%20b.txt"' in listing.text
    assert "a b.txt" in listing.text
