"""Where the application finds its modules: the home directory (--working-directory,
also --home), --python-home and --python-path, in both modes."""

from __future__ import annotations

import sys

from conftest import run_ferrule

APP = """
import json, os, sys

def application(environ, start_response):
    # Changing directory must not change where modules are found (mod_wsgi 4.3.0 fix 3).
    os.chdir("/")
    import helper_in_home
    extra = None
    if environ["PATH_INFO"] == "/extra":
        import extra_package, from_pth
        extra = [extra_package.VALUE, from_pth.VALUE]
    body = json.dumps(
        {"helper": helper_in_home.VALUE, "sys_path": sys.path, "extra": extra}
    ).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""

VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"


def make_home(tmp_path):
    real = tmp_path / "real-home"
    real.mkdir()
    (real / "app.wsgi").write_text(APP)
    (real / "helper_in_home.py").write_text("VALUE = 'from home'\n")
    link = tmp_path / "linked-home"
    link.symlink_to(real)
    return real, link


def test_home_directory_is_on_sys_path_by_its_real_path(ferrule_server, mode_options, tmp_path):
    real, link = make_home(tmp_path)
    server = ferrule_server(link / "app.wsgi", *mode_options, "--home", str(link))
    report = server.get("/").json()
    assert report["helper"] == "from home"
    assert report["sys_path"][0] == str(real)
    assert "" not in report["sys_path"]


def test_python_home_packages_are_importable(ferrule_server, mode_options, tmp_path):
    real, _ = make_home(tmp_path)
    venv = tmp_path / "venv"
    site_packages = venv / "lib" / VERSION / "site-packages"
    site_packages.mkdir(parents=True)
    (site_packages / "extra_package.py").write_text("VALUE = 'from the venv'\n")
    pth_target = tmp_path / "pth-target"
    pth_target.mkdir()
    (pth_target / "from_pth.py").write_text("VALUE = 'through a .pth file'\n")
    (site_packages / "extra.pth").write_text(f"{pth_target}\n")
    server = ferrule_server(
        real / "app.wsgi",
        *mode_options,
        "--working-directory",
        str(real),
        "--python-home",
        str(venv),
    )
    report = server.get("/extra").json()
    assert report["extra"] == ["from the venv", "through a .pth file"]
    assert report["sys_path"][:2] == [str(real), str(site_packages)]


def test_python_home_that_is_not_a_python_installation_is_refused(tmp_path):
    real, _ = make_home(tmp_path)
    result = run_ferrule("start-server", str(real / "app.wsgi"), "--python-home", str(tmp_path))
    assert result.returncode == 2
    assert f"--python-home '{tmp_path}' is not a Python" in result.stderr
    assert f"lib/{VERSION}/site-packages" in result.stderr
