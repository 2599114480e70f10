"""--user and --group: started by root, the server hands its files over and runs the
front end and the application as that user; started by anyone else, it refuses."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_ferrule, wait_until

USER = "www-data"


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def can_run_python_as(user: str) -> bool:
    result = subprocess.run(
        ["runuser", "-u", user, "--", sys.executable, "-c", "import ferrule"],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


@pytest.fixture
def other_user(tmp_path):
    """www-data, able to run this Python and to read the test's files. The Python here
    may live under /root, which must then be searchable by others (as mod_wsgi-express
    also needs: `chmod o+x /root`)."""
    if os.geteuid() != 0:
        pytest.fail("these tests need root: they check that root gives up its privileges")
    if not can_run_python_as(USER) and Path("/root").stat().st_mode & 0o001 == 0:
        os.chmod("/root", Path("/root").stat().st_mode | 0o001)
    assert can_run_python_as(USER), f"{USER} cannot run {sys.executable}"
    for directory in [tmp_path, *tmp_path.parents]:
        if directory.stat().st_mode & 0o005 != 0o005 and str(directory).startswith("/tmp"):
            os.chmod(directory, directory.stat().st_mode | 0o005)
    return pwd.getpwnam(USER)


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
    assert not (server.server_root / "httpd.pid").exists()
    for child in children:
        wait_until(lambda child=child: not Path(f"/proc/{child}").exists(), timeout=10)


def test_unknown_user_is_refused_by_name(tmp_path):
    result = run_ferrule(
        "start-server", str(Path(__file__).parent / "apps" / "daemon.wsgi"), "--user", "nobody-x"
    )
    assert result.returncode == 2
    assert "--user 'nobody-x': no such user on this system" in result.stderr
