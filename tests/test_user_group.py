"""--user and --group: started by root, the server hands its files over and runs the
front end and the application as that user; started by anyone else, it refuses."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import APPS, make_reachable, run_ferrule, wait_until

USER = "www-data"


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


@pytest.fixture
def other_user(tmp_path):
    """www-data, able to run this Python, import ferrule, and reach the test's files
    (every folder on the way is made searchable: see `make_reachable`)."""
    if os.geteuid() != 0:
        pytest.fail("these tests need root: they check that root gives up its privileges")
    import ferrule

    make_reachable(
        USER,
        Path(sys.executable),
        Path(sys.executable).resolve(),
        Path(ferrule.__file__).parent,
        APPS,
        tmp_path,
    )
    return pwd.getpwnam(USER)


def can_write(user: str, path: Path) -> bool:
    return (
        subprocess.run(
            ["runuser", "-u", user, "--", "test", "-w", str(path)], check=False
        ).returncode
        == 0
    )


@pytest.mark.parametrize("mode", [(), ("--embedded-mode",)], ids=["daemon", "embedded"])
def test_processes_run_as_the_given_user(ferrule_server, other_user, mode):
    server = ferrule_server("daemon.wsgi", *mode, "--user", USER, "--group", USER)
    pid = server.get("/pid").json()["pid"]
    assert uid_of(pid) == other_user.pw_uid
    # The front end / supervisor gave up root too, after opening the port.
    assert uid_of(server.process.pid) == other_user.pw_uid
    assert server.error_log_path.stat().st_uid == other_user.pw_uid
    # As that user it can still stop its processes and clean up after itself.
    children = server.child_pids()
    assert server.stop() == 0
    # The pid file stays root's (root's control script signals the pid it names): the
    # supervisor, no longer root, empties it when it cannot remove it.
    pid_file = server.server_root / "httpd.pid"
    assert not pid_file.exists() or pid_file.read_text() == ""
    for child in children:
        wait_until(lambda child=child: not Path(f"/proc/{child}").exists(), timeout=10)


def test_unknown_user_is_refused_by_name(tmp_path):
    result = run_ferrule(
        "start-server", str(Path(__file__).parent / "apps" / "daemon.wsgi"), "--user", "nobody-x"
    )
    assert result.returncode == 2
    assert "--user 'nobody-x': no such user on this system" in result.stderr


@pytest.mark.parametrize("mode", [(), ("--embedded-mode",)], ids=["daemon", "embedded"])
def test_issue_15_root_runs_and_sources_nothing_the_user_can_write(
    ferrule_server, other_user, mode
):
    # Issue 15: the server root used to be handed to --user, and root's `apachectl`
    # sourced `envvars` from it: the user could make root run anything.
    server = ferrule_server("daemon.wsgi", *mode, "--user", USER, "--group", USER)
    assert server.get("/pid").status_code == 200
    root = server.server_root
    for path in (root, root / "apachectl", root / "envvars", root / "httpd.pid"):
        assert path.stat().st_uid == 0, path
        assert not can_write(USER, path), path
    # What the processes must write as the user: the logs, and the daemon socket there.
    assert can_write(USER, server.error_log_path)
    if not mode:
        assert (root / "run").stat().st_uid == other_user.pw_uid
        assert [path.name for path in (root / "run").iterdir()] == [
            f"daemon-{server.process.pid}.sock"
        ]
    # And the control script still stops it, as root (the test reaps the supervisor,
    # its child, as the script waits for it to be gone).
    stop = subprocess.Popen(
        [str(root / "apachectl"), "stop"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert server.process.wait(20) == 0
    assert stop.wait(20) == 0, stop.stderr.read()
    if not mode:
        assert list((root / "run").iterdir()) == []


def test_issue_15_a_server_root_of_someone_else_is_refused(tmp_path, other_user):
    # Issue 15: root would write a control script there that its owner could change.
    root = tmp_path / "theirs"
    root.mkdir()
    os.chown(root, other_user.pw_uid, other_user.pw_gid)
    result = run_ferrule("start-server", str(APPS / "daemon.wsgi"), "--server-root", str(root))
    assert result.returncode == 2
    assert (
        f"ferrule: error: the server root '{root}' belongs to user www-data (uid 33), "
        "not to root (uid 0) who starts the server\n" in result.stderr
    )
    assert not (root / "apachectl").exists()


@pytest.mark.parametrize(
    ("where", "mode", "reason"),
    [
        ("root", 0o777, "can be written by others (mode 0777)"),
        ("root", 0o1777, "can be written by others (mode 1777)"),
        (
            "parent",
            0o777,
            "is inside '{parent}', which others can write (mode 0777, without the sticky bit)",
        ),
    ],
)
def test_issue_15_a_server_root_others_can_write_is_refused(tmp_path, where, mode, reason):
    # Issue 15: anyone could replace the control script or plant an `envvars` there, or
    # (from the folder above) swap the whole server root.
    parent = tmp_path / "shared"
    root = parent / "site"
    root.mkdir(parents=True)
    os.chmod(root if where == "root" else parent, mode)
    for command in ("start-server", "setup-server"):
        result = run_ferrule(command, str(APPS / "daemon.wsgi"), "--server-root", str(root))
        assert result.returncode == 2, command
        assert (
            f"ferrule: error: the server root '{root}' {reason.format(parent=parent)}\n"
            in result.stderr
        ), command
        assert not (root / "apachectl").exists()


def test_issue_15_make_reachable_opens_every_folder_on_the_way(tmp_path):
    # Issue 15: the privilege tests must pass from a clone in a folder only root can
    # enter; `make_reachable` opens (o+x) each folder on the way and nothing else.
    if os.geteuid() != 0:
        pytest.fail("this test needs root")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    for folder in (tmp_path, tmp_path / "a", tmp_path / "a" / "b", deep):
        os.chmod(folder, 0o700)
    script = deep / "app.wsgi"
    script.write_text("")
    script.chmod(0o644)
    make_reachable(USER, script)
    reads = subprocess.run(["runuser", "-u", USER, "--", "cat", str(script)], check=False)
    assert reads.returncode == 0
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o701
    assert deep.stat().st_mode & 0o777 == 0o701


def test_issue_15_the_control_script_never_imports_from_the_launch_directory(tmp_path, other_user):
    # Issue 15: `apachectl` runs `python -m ferrule` as root from the directory the server
    # was set up in, often the application's, which the user may own; `-m` would put
    # that directory first on sys.path, and a `ferrule.py` planted there would run as root.
    launch = tmp_path / "app"
    launch.mkdir()
    os.chown(launch, other_user.pw_uid, other_user.pw_gid)
    root = tmp_path / "root"
    result = subprocess.run(
        [sys.executable, "-m", "ferrule", "setup-server", str(APPS / "daemon.wsgi"),
         "--server-root", str(root), "--user", USER],
        cwd=launch, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    planted = tmp_path / "planted-code-ran"
    (launch / "ferrule.py").write_text(f"open({str(planted)!r}, 'w').close()\n")
    check = subprocess.run(
        [str(root / "apachectl"), "configtest"], capture_output=True, text=True, check=False
    )
    assert "Syntax OK" in check.stdout, check.stderr
    assert not planted.exists()


def test_issue_19_daemon_mode_reads_a_root_only_key_before_giving_up_root(
    ferrule_server, other_user, tmp_path
):
    import requests
    import trustme

    from conftest import free_port

    ca = trustme.CA()
    issued = ca.issue_cert("localhost")
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    issued.private_key_pem.write_to_path(str(keys / "site.key"))
    issued.cert_chain_pems[0].write_to_path(str(keys / "site.crt"))
    os.chmod(keys / "site.key", 0o600)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    unreadable = subprocess.run(
        ["runuser", "-u", USER, "--", "test", "-r", str(keys / "site.key")], check=False
    )
    assert unreadable.returncode != 0
    port = free_port()
    server = ferrule_server(
        "daemon.wsgi",
        "--user",
        USER,
        "--group",
        USER,
        "--https-port",
        str(port),
        "--ssl-certificate",
        str(keys / "site"),
    )
    # The port takes connections (the kernel's backlog) from its bind, before the
    # switch to --user: wait for the switch rather than assume it came first.
    wait_until(lambda: uid_of(server.process.pid) == other_user.pw_uid)
    answer = requests.get(
        f"https://localhost:{port}/pid", verify=str(tmp_path / "ca.pem"), timeout=30
    )
    assert answer.status_code == 200
