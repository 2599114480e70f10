"""Reloading (mod_wsgi 4.3.0 new feature 3): when the script, the module's file or the
.ini file changes, the next request is served by the new code, with no request failing
on the way; --reload-on-changes extends this to every imported file, and
--disable-reloading turns it off. In both modes."""

from __future__ import annotations

import time

from conftest import LoadLoop, wait_until

SCRIPT = """
import os

def application(environ, start_response):
    body = ("{text} from %d" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


def write_script(path, text):
    path.write_text(SCRIPT.replace("{text}", text))


def test_edited_script_serves_the_next_request(ferrule_server, mode_options, tmp_path):
    script = tmp_path / "app.wsgi"
    write_script(script, "version one")
    server = ferrule_server(script, *mode_options, "--processes", "2", "--threads", "2")
    assert server.get("/").text.startswith("version one")
    with LoadLoop(server.url + "/", clients=2) as load:
        time.sleep(0.3)
        write_script(script, "version two, edited")
        # The very next request after the edit sees it.
        assert server.get("/").text.startswith("version two, edited")
        time.sleep(0.3)
    assert load.failures == []
    for _ in range(10):
        assert server.get("/").text.startswith("version two, edited")


def test_edited_module_is_reloaded(ferrule_server, mode_options, tmp_path):
    (tmp_path / "webapp.py").write_text(SCRIPT.replace("{text}", "module one"))
    server = ferrule_server(
        None, *mode_options, "--application-type", "module", "--entry-point", "webapp",
        "--working-directory", str(tmp_path),
    )  # fmt: skip
    assert server.get("/").text.startswith("module one")
    (tmp_path / "webapp.py").write_text(SCRIPT.replace("{text}", "module two, edited"))
    assert server.get("/").text.startswith("module two, edited")


def test_edited_paste_configuration_is_reloaded(ferrule_server, mode_options, tmp_path):
    (tmp_path / "parts.py").write_text(
        "def make(global_config, greeting):\n"
        "    def app(environ, start_response):\n"
        "        start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "        return [greeting.encode()]\n"
        "    return app\n"
    )
    ini = tmp_path / "site.ini"
    ini.write_text("[app:main]\npaste.app_factory = parts:make\ngreeting = first\n")
    server = ferrule_server(
        ini, *mode_options, "--application-type", "paste", "--working-directory", str(tmp_path)
    )
    assert server.get("/").text == "first"
    ini.write_text("[app:main]\npaste.app_factory = parts:make\ngreeting = second one\n")
    assert server.get("/").text == "second one"


def test_disable_reloading_keeps_the_loaded_code(ferrule_server, mode_options, tmp_path):
    script = tmp_path / "app.wsgi"
    write_script(script, "version one")
    server = ferrule_server(script, *mode_options, "--disable-reloading")
    assert server.get("/").text.startswith("version one")
    write_script(script, "version two, edited")
    time.sleep(0.5)
    assert server.get("/").text.startswith("version one")


def write_app_importing_a_helper(directory):
    """An application whose answer comes from helper.py, a module it imports."""
    (directory / "helper.py").write_text("TEXT = 'helper one'\n")
    script = directory / "app.wsgi"
    script.write_text(
        "import helper\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [helper.TEXT.encode()]\n"
    )
    return script


def test_reload_on_changes_follows_imported_modules(ferrule_server, mode_options, tmp_path):
    script = write_app_importing_a_helper(tmp_path)
    server = ferrule_server(
        script, *mode_options, "--reload-on-changes", "--working-directory", str(tmp_path)
    )
    assert server.get("/").text == "helper one"
    time.sleep(1.5)  # the watcher has seen every imported file once
    with LoadLoop(server.url + "/", clients=2) as load:
        (tmp_path / "helper.py").write_text("TEXT = 'helper two, edited'\n")
        wait_until(lambda: server.get("/").text == "helper two, edited", timeout=15)
    assert load.failures == []


def test_without_reload_on_changes_imported_modules_are_not_followed(
    ferrule_server, mode_options, tmp_path
):
    script = write_app_importing_a_helper(tmp_path)
    server = ferrule_server(script, *mode_options, "--working-directory", str(tmp_path))
    assert server.get("/").text == "helper one"
    (tmp_path / "helper.py").write_text("TEXT = 'helper two, edited'\n")
    time.sleep(2.5)
    assert server.get("/").text == "helper one"
