"""What must end when a request ends, ends (issue 15): a request whose client left, the
request body's source that Python still holds, the application replaced by a reload.
Each of these once leaked: the bookkeeping, a stalled connection or daemon thread, a
deadlock.

https://github.com/ferrule/ferrule/issues/15
"""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from conftest import wait_until


@pytest.fixture
def markers(tmp_path):
    directory = tmp_path / "markers"
    directory.mkdir()
    return directory


def test_issue_15_a_request_whose_client_left_is_forgotten_when_it_ends(ferrule_server, markers):
    # The request runs for 1 s; its client leaves at once. Once it ended, nothing of it
    # may remain: no 504 "for" it at --request-timeout (which would also replace a
    # healthy daemon), and --inactivity-timeout sees the daemon idle.
    server = ferrule_server(
        "lifetimes.wsgi",
        "--request-timeout", "3",
        "--inactivity-timeout", "2",
        "--log-level", "info",
        env={"LIFETIMES_MARKER_DIR": str(markers)},
    )  # fmt: skip
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /sleep?seconds=1&tag=left HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: (markers / "left.started").exists())
    wait_until(lambda: (markers / "left.done").exists())
    log = server.wait_for_log("had no request for --inactivity-timeout", timeout=15)
    assert "--request-timeout" not in log


@pytest.mark.parametrize("threads", ["1", "2"])
def test_issue_15_a_body_left_unread_while_python_keeps_the_environ_does_not_stall(
    ferrule_server, mode_options, markers, threads
):
    server = ferrule_server(
        "lifetimes.wsgi",
        *mode_options,
        "--threads", threads,
        env={"LIFETIMES_MARKER_DIR": str(markers)},
    )  # fmt: skip
    with requests.Session() as session:
        answer = session.post(f"{server.url}/keep-environ", data=b"b" * (1 << 20), timeout=10)
        assert answer.status_code == 200
        # The same keep-alive connection, and a new one (in daemon mode with one thread,
        # the daemon thread must be free again).
        assert session.get(f"{server.url}/pid", timeout=10).status_code == 200
    assert requests.get(f"{server.url}/pid", timeout=10).status_code == 200


RELOADED_SCRIPT = """
import os
import time
from pathlib import Path

MARKERS = Path(os.environ["LIFETIMES_MARKER_DIR"])


class Application:
    # Its finalizer releases the GIL (as closing a database connection in __del__ does)
    # while the server may still hold the lock the application was swapped under.
    def __call__(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"{version}"]

    def __del__(self):
        (MARKERS / "finalizer.started").touch()
        time.sleep(1)


def __getattr__(name):
    # Not kept in the module: the server holds the only reference, so replacing the
    # application finalizes the old one there and then.
    if name == "application":
        return Application()
    raise AttributeError(name)
"""


def test_issue_15_replacing_the_application_on_reload_cannot_deadlock(
    ferrule_server, markers, tmp_path
):
    script = tmp_path / "finalized.wsgi"
    script.write_text(RELOADED_SCRIPT.replace("{version}", "one"))
    server = ferrule_server(
        script,
        "--embedded-mode",
        "--threads", "2",
        env={"LIFETIMES_MARKER_DIR": str(markers)},
    )  # fmt: skip
    assert server.get("/").text == "one"
    script.write_text(RELOADED_SCRIPT.replace("{version}", "two"))
    answers = []

    def fetch():
        answers.append(requests.get(server.url + "/", timeout=20).text)

    reloading = threading.Thread(target=fetch)
    reloading.start()
    # While the old application's finalizer runs (GIL released), a second request.
    wait_until(lambda: (markers / "finalizer.started").exists())
    fetch()
    reloading.join()
    assert answers == ["two", "two"]
