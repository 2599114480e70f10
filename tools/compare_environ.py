#!/usr/bin/env python3
"""Compares the WSGI environ Ferrule gives an application with mod_wsgi-express's, key by key.

A developer tool, not part of `make test` (CI does not build Apache). It starts the real
mod_wsgi-express and Ferrule with the same options, one configuration after another
(daemon and embedded mode, one and two processes, a mount point), sends both the same
requests with curl, and prints per request the keys only one of them sets and the values
that differ. Values that change from run to run (ports, pids, times, request ids) are
compared by form only: a float with a float, digits with digits.

Setting up, once (as root; takes a few minutes):

    apt-get install -y apache2-dev curl
    python3 -m venv /work/mw-venv && /work/mw-venv/bin/pip install mod_wsgi
    chmod o+x /root          # when Python lives under /root: www-data must reach it

Running it, from the repository with `make develop` done:

    .venv/bin/python tools/compare_environ.py                 # every configuration
    .venv/bin/python tools/compare_environ.py daemon-p1 -v    # one, with same-form values
    .venv/bin/python tools/compare_environ.py --keep /tmp/environs   # and every environ

Both servers run as `--user www-data --group www-data` when started by root. The
application is written to /tmp/compare-app (world-readable); it writes each environ it
sees to a file named by the request's X-Compare-Id header, so HEAD requests are
compared too. The exit status is 0 when nothing differs beyond the expected keys listed
in EXPECTED (each there with its reason, as docs/python.md's table gives them), 1
otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP_DIR = Path("/tmp/compare-app")
DUMPS = APP_DIR / "dumps"

APP = '''\
"""Writes the environ it sees, as JSON, to DUMPS/<X-Compare-Id>.json."""
import json
import os

OPAQUE = ("wsgi.input", "wsgi.errors", "wsgi.file_wrapper")


def describe(key, value):
    if key in OPAQUE:
        return "<%s>" % type(value).__name__
    if isinstance(value, str):
        return value
    return "%s:%r" % (type(value).__name__, value)


def application(environ, start_response):
    body = environ["wsgi.input"].read()
    seen = {key: describe(key, value) for key, value in environ.items()}
    seen["<body read>"] = body.decode("latin-1")
    seen["<server_pid is the app's pid>"] = str(environ.get("mod_wsgi.server_pid") == str(os.getpid()))
    name = environ.get("HTTP_X_COMPARE_ID", "unnamed").replace("/", "_")
    path = os.path.join(DUMPS, name + ".json")
    with open(path + ".part", "w") as dump:
        json.dump(seen, dump, sort_keys=True, indent=1)
    os.replace(path + ".part", path)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"seen\\n"]
'''

# name -> options given to both servers.
CONFIGURATIONS = {
    "daemon-p1": ["--processes", "1", "--threads", "4"],
    "embedded-p1": ["--embedded-mode", "--processes", "1", "--threads", "4"],
    "daemon-p2": ["--processes", "2", "--threads", "4"],
    "embedded-p2": ["--embedded-mode", "--processes", "2", "--threads", "4"],
    "daemon-mount": ["--processes", "1", "--threads", "4", "--mount-point", "/app"],
    "embedded-mount": [
        *("--embedded-mode", "--processes", "1", "--threads", "4"),
        *("--mount-point", "/app"),
    ],
}

# name -> curl arguments (the URL's path and query after them).
REQUESTS = {
    "get-root": ([], "/"),
    "get-query": ([], "/a/b?x=1&y=%20"),
    "post-form": (["--data", "name=value&other=a+b"], "/form"),
    "custom-headers": (
        [
            *("-H", "X-Custom: custom value"),
            *("-H", "Cookie: first=1"),
            *("-H", "Cookie: second=2"),
            *("-H", "Authorization: Basic dXNlcjpwYXNz"),
        ],
        "/headers",
    ),
    "head": (["--head"], "/head?h=1"),
    "escaped-path": ([], "/x%2Fy/a%20b"),
    "escaped-space": ([], "/a%20b/c"),
    "mounted": ([], "/app/below/it?q=1"),
    "mount-itself": ([], "/app"),
}

# Keys whose value changes from run to run: compared by form.
VOLATILE = {
    "REMOTE_PORT",
    "mod_wsgi.request_id",
    "mod_wsgi.connection_id",
    "mod_wsgi.server_pid",
    "mod_wsgi.request_start",
    "mod_wsgi.queue_start",
    "mod_wsgi.daemon_start",
    "mod_wsgi.application_start",
    "mod_wsgi.thread_id",
}

# Differences that are known and explained (docs/python.md, "The environ against
# mod_wsgi-express"): key -> reason. They are listed, not counted as failures.
EXPECTED = {
    "SERVER_SOFTWARE": "names the server",
    "apache.version": "there is no Apache",
    "ferrule.version": "Ferrule's own version",
    "mod_wsgi.version": "the mod_wsgi release Ferrule promises (docs/python.md)",
    "wsgi.errors": "a type of Ferrule's",
    "wsgi.input": "a type of Ferrule's",
    "SCRIPT_FILENAME": "Apache names the document-root file it mapped, Ferrule the script",
    "mod_wsgi.callable_object": "express calls its handler.wsgi's handle_request",
    "mod_wsgi.handler_script": "express's generated handler.wsgi in the server root",
    "mod_wsgi.request_handler": "express serves through that handler script",
    "mod_wsgi.script_name": "Apache's split before express's handler moves it",
    "mod_wsgi.path_info": "Apache's split before express's handler moves it",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode} (output: {log})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port} after {timeout} s (output: {log})")


class Server:
    """One server (its command line ends with the shared options), stopped on exit."""

    def __init__(self, name: str, command: list[str], root: Path, options: list[str]):
        self.name = name
        self.port = free_port()
        self.root = root
        if root.exists():
            shutil.rmtree(root)
        args = [*command, "start-server", str(APP_DIR / "environ.wsgi")]
        args += ["--host", "127.0.0.1", "--port", str(self.port), "--server-root", str(root)]
        if os.geteuid() == 0:
            args += ["--user", "www-data", "--group", "www-data"]
        args += options
        self.log = Path(tempfile.gettempdir()) / f"compare-{name}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for_port(self.port, self.process, self.log)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def environ(self, request: str, curl_args: list[str], target: str) -> tuple[str, dict | None]:
        """Sends the request with curl; returns the status and what the app saw (None when
        the request did not reach it)."""
        ident = f"{self.name}-{request}-{time.monotonic_ns()}"
        dump = DUMPS / f"{ident}.json"
        result = subprocess.run(
            [
                *("curl", "-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}"),
                *("-H", f"X-Compare-Id: {ident}"),
                *curl_args,
                f"http://127.0.0.1:{self.port}{target}",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        status = result.stdout.strip()
        if not dump.exists():
            return status, None
        environ = json.loads(dump.read_text())
        dump.unlink()
        environ.pop("HTTP_X_COMPARE_ID", None)
        return status, environ


def normalize(key: str, value: str, server: Server) -> str:
    """The value with this server's own port and root replaced; a volatile one by form."""
    if key in VOLATILE:
        if value.startswith("float:"):
            # A time (seconds since the epoch), or something else (0.0: not set).
            return "time" if float(value[6:]) > 1e9 else value
        if value.startswith("int:"):
            # mod_wsgi.thread_id counts from 1.
            return "int >= 1" if int(value[4:]) >= 1 else value
        if value.isdigit():
            return "digits"
        return "text" if value else "''"
    return value.replace(str(server.port), "{PORT}").replace(str(server.root), "{ROOT}")


def compare(theirs: dict, ours: dict, mw: Server, fe: Server, verbose: bool) -> list[str]:
    """Lines describing each difference; those of EXPECTED keys are marked, not counted."""
    lines = []
    for key in sorted(set(theirs) | set(ours)):
        mark = "  (expected)" if key in EXPECTED else ""
        if key not in ours:
            lines.append(f"  only mod_wsgi-express: {key} = {theirs[key]!r}{mark}")
        elif key not in theirs:
            lines.append(f"  only ferrule:          {key} = {ours[key]!r}{mark}")
        else:
            a, b = normalize(key, theirs[key], mw), normalize(key, ours[key], fe)
            if a != b:
                lines.append(f"  differs {key}: {theirs[key]!r} / ours {ours[key]!r}{mark}")
            elif verbose and theirs[key] != ours[key]:
                lines.append(f"  same form {key}: {theirs[key]!r} / ours {ours[key]!r}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configurations", nargs="*", help=", ".join(CONFIGURATIONS))
    parser.add_argument("--mod-wsgi-express", default="/work/mw-venv/bin/mod_wsgi-express")
    parser.add_argument(
        "--ferrule", default=f"{sys.executable} -m ferrule", help="the command before start-server"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show same-form values too")
    parser.add_argument(
        "--keep", type=Path, help="write every environ to KEEP/CONFIG/REQUEST.*.json"
    )
    args = parser.parse_args()
    for name in args.configurations:
        if name not in CONFIGURATIONS:
            parser.error(f"no configuration {name!r}: {', '.join(CONFIGURATIONS)}")

    DUMPS.mkdir(parents=True, exist_ok=True)
    (APP_DIR / "environ.wsgi").write_text(APP.replace("DUMPS", repr(str(DUMPS))))
    APP_DIR.chmod(0o755)
    DUMPS.chmod(0o1777)
    (APP_DIR / "environ.wsgi").chmod(0o644)

    unexpected = 0
    for name in args.configurations or CONFIGURATIONS:
        options = CONFIGURATIONS[name]
        print(f"== {name}: {' '.join(options)}")
        mw = Server("mw", [args.mod_wsgi_express], Path("/tmp/compare-mw"), options)
        try:
            fe = Server("fe", args.ferrule.split(), Path("/tmp/compare-fe"), options)
            try:
                for request, (curl_args, target) in REQUESTS.items():
                    mw_status, theirs = mw.environ(request, curl_args, target)
                    fe_status, ours = fe.environ(request, curl_args, target)
                    print(f"-- {request} {target}: status {mw_status} / ours {fe_status}")
                    if args.keep:
                        keep = args.keep / name
                        keep.mkdir(parents=True, exist_ok=True)
                        for side, environ in (("mod_wsgi-express", theirs), ("ferrule", ours)):
                            text = json.dumps(environ, sort_keys=True, indent=1)
                            (keep / f"{request}.{side}.json").write_text(text)
                    if mw_status != fe_status:
                        unexpected += 1
                        print("  differs status")
                    if theirs is None or ours is None:
                        if (theirs is None) != (ours is None):
                            unexpected += 1
                            print("  the application saw it on one server only")
                        continue
                    lines = compare(theirs, ours, mw, fe, args.verbose)
                    unexpected += sum(
                        1
                        for line in lines
                        if re.match(r"  (only|differs)", line) and "(expected)" not in line
                    )
                    print("\n".join(lines) if lines else "  same")
            finally:
                fe.stop()
        finally:
            mw.stop()
    print(f"{unexpected} unexpected difference(s)")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
