"""How Python is set up in the processes that run the application (--locale, --lang,
--python-warnings, --switch-interval, --python-eggs, --envvars-script, --process-group,
--application-group, --free-threading), in both modes, through a real server."""

import os
import sysconfig

import pytest

from conftest import APPS, run_ferrule

APP = "python_settings.wsgi"


def report(server, path="/"):
    response = server.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_c_locale_becomes_utf8_as_in_mod_wsgi_express(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, env={"LANG": "C", "LC_ALL": "", "LC_CTYPE": ""})
    seen = report(server)
    # This machine has C.UTF-8 (and maybe en_US.UTF-8): the ASCII locale is replaced.
    assert seen["LANG"] == seen["LC_ALL"]
    assert seen["LANG"] in ("en_US.UTF-8", "C.UTF-8")
    assert seen["filesystem_encoding"] == "utf-8"


def test_locale_sets_lang_and_lc_all(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, "--locale", "C.UTF-8")
    seen = report(server)
    assert (seen["LANG"], seen["LC_ALL"]) == ("C.UTF-8", "C.UTF-8")
    assert "Locale Setting     : C.UTF-8" in server.stdout()


def test_lang_is_used_when_locale_is_not_given(ferrule_server):
    server = ferrule_server(APP, "--lang", "POSIX")
    assert report(server)["LC_ALL"] == "POSIX"


def test_an_unknown_locale_is_refused_by_name():
    result = run_ferrule("start-server", str(APPS / APP), "--locale", "xx_YY.NOPE")
    assert result.returncode == 2
    assert "--locale 'xx_YY.NOPE' is not a locale this machine has" in result.stderr


def test_python_warnings_filter_the_application_warnings(ferrule_server, mode_options):
    plain = ferrule_server(APP, *mode_options)
    assert plain.get("/warn").status_code == 200
    strict = ferrule_server(APP, *mode_options, "--python-warnings", "error::DeprecationWarning")
    assert report(strict)["warnoptions"] == ["error::DeprecationWarning"]
    assert strict.get("/warn").status_code == 500
    assert "DeprecationWarning: an old way" in strict.wait_for_log("an old way")


def test_python_warnings_may_be_given_more_than_once(ferrule_server):
    server = ferrule_server(
        APP, "--python-warnings", "ignore::UserWarning", "--python-warnings", "default"
    )
    assert report(server)["warnoptions"] == ["ignore::UserWarning", "default"]


def test_a_bad_warnings_filter_is_refused():
    result = run_ferrule("start-server", str(APPS / APP), "--python-warnings", "shout")
    assert result.returncode == 2
    assert "--python-warnings 'shout': the action is not one of" in result.stderr


def test_switch_interval_is_set_in_each_process(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, "--switch-interval", "0.25")
    assert report(server)["switch_interval"] == 0.25


def test_switch_interval_must_be_positive():
    result = run_ferrule("start-server", str(APPS / APP), "--switch-interval", "0")
    assert result.returncode == 2
    assert "--switch-interval" in result.stderr


def test_python_eggs_sets_the_egg_cache(ferrule_server, mode_options, tmp_path):
    default = ferrule_server(APP, *mode_options)
    assert report(default)["PYTHON_EGG_CACHE"] == str(default.server_root / "python-eggs")
    chosen = ferrule_server(APP, *mode_options, "--python-eggs", str(tmp_path / "eggs"))
    assert report(chosen)["PYTHON_EGG_CACHE"] == str(tmp_path / "eggs")


def test_envvars_script_exports_reach_the_application(ferrule_server, mode_options, tmp_path):
    script = tmp_path / "envvars"
    script.write_text(
        "FROM_ENVVARS='set by the script'\nexport FROM_ENVVARS\n"
        "unset UNSET_BY_ENVVARS\nLANG=C.UTF-8\nLC_ALL=C.UTF-8\necho sourced\n"
    )
    server = ferrule_server(
        APP,
        *mode_options,
        "--envvars-script",
        str(script),
        env={"UNSET_BY_ENVVARS": "present", "LANG": "C"},
    )
    seen = report(server)
    assert seen["FROM_ENVVARS"] == "set by the script"
    assert seen["UNSET_BY_ENVVARS"] is None
    # The script wins over the locale ferrule chooses, as the envvars file does in
    # mod_wsgi-express's apachectl.
    assert seen["LC_ALL"] == "C.UTF-8"


def test_a_failing_envvars_script_stops_start_up_naming_it(tmp_path):
    script = tmp_path / "envvars"
    script.write_text("echo 'no database url' >&2\nfalse\n")
    result = run_ferrule(
        "start-server",
        str(APPS / APP),
        "--server-root",
        str(tmp_path / "root"),
        "--envvars-script",
        str(script),
        "--port",
        "0",
    )
    assert result.returncode == 2
    assert f"--envvars-script '{script}' failed" in result.stderr
    assert "no database url" in result.stderr


def test_a_missing_envvars_script_is_refused(tmp_path):
    missing = tmp_path / "nowhere"
    result = run_ferrule("start-server", str(APPS / APP), "--envvars-script", str(missing))
    assert result.returncode == 2
    assert f"--envvars-script '{missing}' is not an existing file" in result.stderr


def test_process_group_names_the_daemon_group(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, "--process-group", "shop")
    # As in mod_wsgi-express, the name has no effect in embedded mode.
    expected = "" if "--embedded-mode" in mode_options else "shop"
    assert report(server)["process_group"] == expected


def test_application_group_global_is_the_main_interpreter(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, "--application-group", "%{GLOBAL}")
    assert report(server)["application_group"] == ""


def test_a_named_application_group_is_refused_with_the_reason():
    result = run_ferrule("start-server", str(APPS / APP), "--application-group", "shop")
    assert result.returncode == 2
    assert "--application-group 'shop' is not supported" in result.stderr
    assert "one interpreter per process" in result.stderr


@pytest.mark.skipif(
    bool(sysconfig.get_config_var("Py_GIL_DISABLED")), reason="a free-threaded build"
)
def test_free_threading_is_refused_on_a_build_with_a_gil():
    result = run_ferrule("start-server", str(APPS / APP), "--free-threading")
    assert result.returncode == 2
    assert "--free-threading needs a free-threaded Python build" in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="root alone refuses a script others can change")
def test_root_refuses_an_envvars_script_others_can_change(tmp_path):
    script = tmp_path / "envvars"
    script.write_text("export A=1\n")
    script.chmod(0o666)
    result = run_ferrule("start-server", str(APPS / APP), "--envvars-script", str(script))
    assert result.returncode == 2
    assert f"--envvars-script '{script}' can be written by others (mode 0666)" in result.stderr
