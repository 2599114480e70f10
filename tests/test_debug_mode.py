"""--debug-mode: one process, one thread, in the foreground on a terminal, so that pdb in
the application stops at a prompt (mod_wsgi 4.3.0 new feature 2). Driven through a real
pseudo-terminal with pexpect."""

from __future__ import annotations

import threading

import pexpect
import requests

from conftest import get_when_ready, start_on_terminal

APP = """
import os, threading

def application(environ, start_response):
    answer = "pid=%d thread=%s" % (os.getpid(), threading.current_thread().name)
    if environ["PATH_INFO"] == "/pdb":
        import pdb; pdb.set_trace()
        answer += " after pdb"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [answer.encode()]
"""


def start_debug_server(tmp_path):
    script = tmp_path / "debug.wsgi"
    script.write_text(APP)
    child, url = start_on_terminal(tmp_path, script, "--debug-mode")
    child.expect("Operating Mode     : debug")
    child.expect("Request Capacity   : 1 \\(1 process \\* 1 threads\\)")
    return child, url


def test_pdb_stops_at_a_prompt_on_the_terminal(tmp_path):
    child, url = start_debug_server(tmp_path)
    try:
        first = get_when_ready(url + "/")
        # One process: the one started from the terminal serves the request itself.
        assert first.text.startswith(f"pid={child.pid} ")
        result = {}
        client = threading.Thread(target=lambda: result.update(r=requests.get(url + "/pdb")))
        client.start()
        child.expect_exact("(Pdb)")
        child.sendline("p environ['PATH_INFO']")
        child.expect_exact("'/pdb'")
        child.sendline("c")
        client.join(30)
        assert result["r"].status_code == 200
        assert result["r"].text.endswith(" after pdb")
        # Ctrl-C on the terminal stops the server.
        child.sendintr()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
