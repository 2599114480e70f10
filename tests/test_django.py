"""Django: a project made by the real `django-admin startproject`, with "ferrule.server"
in INSTALLED_APPS, served by `manage.py runferrule` (and `runmodwsgi`): a view, the
admin's collected static files and an uploaded media file; once more with settings that
define no BASE_DIR (mod_wsgi 4.3.0 fix 4)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

VIEW = """
from django.http import HttpResponse


def hello(request):
    return HttpResponse("hello from django, " + request.GET.get("name", "nobody"))
"""


def django_admin(*args: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", *args], cwd=cwd, check=True, capture_output=True
    )


def make_project(tmp_path: Path, *, without_base_dir: bool) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    django_admin("startproject", "mysite", str(root), cwd=tmp_path)
    settings = root / "mysite" / "settings.py"
    text = settings.read_text()
    text = text.replace("INSTALLED_APPS = [", 'INSTALLED_APPS = [\n    "ferrule.server",', 1)
    text = re.sub(r"ALLOWED_HOSTS = \[\]", 'ALLOWED_HOSTS = ["127.0.0.1", "localhost"]', text)
    text += '\nSTATIC_ROOT = BASE_DIR / "collected-static"\n'
    text += 'MEDIA_URL = "/media/"\nMEDIA_ROOT = BASE_DIR / "media"\n'
    if without_base_dir:
        # Settings as Django < 1.6 wrote them: absolute paths, no BASE_DIR at all.
        text = re.sub(r"^BASE_DIR = .*$", "", text, flags=re.MULTILINE)
        text = text.replace("BASE_DIR / ", f"{str(root)!r} + '/' + ")
        assert "BASE_DIR" not in text
    settings.write_text(text)
    (root / "mysite" / "views.py").write_text(VIEW)
    urls = root / "mysite" / "urls.py"
    urls.write_text(
        urls.read_text()
        .replace(
            "from django.urls import path", "from django.urls import path\nfrom mysite import views"
        )
        .replace("urlpatterns = [", 'urlpatterns = [\n    path("hello/", views.hello),')
    )
    django_admin("collectstatic", "--noinput", "--settings", "mysite.settings", cwd=root)
    (root / "media").mkdir()
    (root / "media" / "upload.txt").write_text("an uploaded file")
    return root


@pytest.mark.parametrize("without_base_dir", [False, True], ids=["base-dir", "no-base-dir"])
@pytest.mark.parametrize("command", ["runferrule", "runmodwsgi"])
def test_django_project_is_served_by_manage_py(ferrule_server, tmp_path, without_base_dir, command):
    root = make_project(tmp_path, without_base_dir=without_base_dir)
    server = ferrule_server(
        None,
        command=[sys.executable, "manage.py", command],
        cwd=root,
        env={"DJANGO_SETTINGS_MODULE": "mysite.settings"},
    )
    view = server.get("/hello/?name=ferrule")
    assert view.status_code == 200
    assert view.text == "hello from django, ferrule"
    css = server.get("/static/admin/css/base.css")
    assert css.status_code == 200
    assert css.headers["Content-Type"] == "text/css"
    assert css.content == (root / "collected-static" / "admin" / "css" / "base.css").read_bytes()
    media = server.get("/media/upload.txt")
    assert media.text == "an uploaded file"
    # Django answers what is neither static nor a view.
    assert server.get("/nowhere/").status_code == 404
    banner = server.stdout()
    assert "Operating Mode     : daemon" in banner


def test_runferrule_passes_start_server_options_through(ferrule_server, tmp_path):
    root = make_project(tmp_path, without_base_dir=False)
    server = ferrule_server(
        None,
        "--processes", "2", "--threads", "3", "--embedded-mode",
        command=[sys.executable, "manage.py", "runferrule"],
        cwd=root,
    )  # fmt: skip
    assert server.get("/hello/").text == "hello from django, nobody"
    assert "Request Capacity   : 6 (2 processes * 3 threads)" in server.stdout()
    assert "Operating Mode     : embedded" in server.stdout()


@pytest.mark.parametrize("command", ["runferrule", "runmodwsgi"])
@pytest.mark.parametrize("how", ["help", "--help"])
def test_manage_py_help_lists_the_start_server_options(tmp_path, command, how):
    """Issue 24: `manage.py help runferrule` lists the options the command takes, as
    `manage.py help runmodwsgi` does under mod_wsgi."""
    root = make_project(tmp_path, without_base_dir=False)
    arguments = ["help", command] if how == "help" else [command, "--help"]
    result = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: manage.py {command} [start-server options]")
    for option in ("--processes", "--threads", "--port", "--embedded-mode", "--enable-debugger"):
        assert f"  {option}" in result.stdout, option
