"""Logs as Apache users expect them (issue 21): where the files go and what they are
called, and every access-log format directive checked line by line, in both modes.

Issue 21: https://github.com/ferrule/ferrule/issues/21 ("Logs as Apache users expect them").
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import threading

import requests

from conftest import APPS, wait_until

APP = "log_formats.wsgi"
STAMP = r"\[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\]"
# The combined format as the tools that read it (GoAccess, awstats) parse it.
QUOTED = r'"((?:[^"\\]|\\.)*)"'
COMBINED = re.compile(
    r"^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) "
    + STAMP
    + " "
    + QUOTED.replace("(", "(?P<request>", 1)
    + r" (?P<status>\d{3}) (?P<bytes>\d+|-) "
    + QUOTED.replace("(", "(?P<referer>", 1)
    + " "
    + QUOTED.replace("(", "(?P<agent>", 1)
    + "$"
)


def read_lines(path, count: int) -> list[str]:
    """The first `count` lines of a log, once they are all written."""

    def ready():
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return None
        return lines if len(lines) >= count else None

    return wait_until(ready)


def test_issue_21_log_directory_and_names(ferrule_server, mode_options, tmp_path):
    logs = tmp_path / "logs"
    server = ferrule_server(
        APP,
        *mode_options,
        "--log-directory",
        str(logs),
        "--error-log-name",
        "errors.txt",
        "--access-log-name",
        "requests.txt",
        "--startup-log",
        "--startup-log-name",
        "start.txt",
        "--access-log",
    )
    assert server.get("/").status_code == 200
    assert server.get("/fail").status_code == 500
    # Both requests are logged; which line lands first is the log writer's business.
    lines = read_lines(logs / "requests.txt", 2)
    assert any('"GET / HTTP/1.1" 200 6' in line for line in lines), lines
    wait_until(lambda: "failed on purpose" in (logs / "errors.txt").read_text())
    # A traceback: every line of it is a line of the error log.
    error_lines = (logs / "errors.txt").read_text().splitlines()
    assert any("Traceback (most recent call last):" in line for line in error_lines)
    assert (logs / "start.txt").exists()
    for default_name in ("error_log", "access_log", "startup_log"):
        assert not (server.server_root / default_name).exists()
        assert not (logs / default_name).exists()


def test_issue_21_log_directory_overrides_log_to_terminal(ferrule_server, mode_options, tmp_path):
    # As in mod_wsgi-express: an explicit --log-directory wins over --log-to-terminal.
    logs = tmp_path / "logs"
    server = ferrule_server(
        APP, *mode_options, "--log-to-terminal", "--log-directory", str(logs), "--access-log"
    )
    assert server.get("/").status_code == 200
    [line] = read_lines(logs / "access_log", 1)
    assert '"GET / HTTP/1.1" 200 6' in line
    assert (logs / "error_log").exists()


def test_issue_21_combined_format_reads_with_the_usual_regex(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, "--access-log", "--access-log-format", "combined")
    headers = {"Referer": "http://example.com/from", "User-Agent": 'agent "quoted"'}
    assert server.get("/size/10", headers=headers).status_code == 200
    assert server.get("/size/0").status_code == 200
    first, second = read_lines(server.server_root / "access_log", 2)
    match = COMBINED.match(first)
    assert match, first
    assert match["host"] == "127.0.0.1"
    assert match["request"] == "GET /size/10 HTTP/1.1"
    assert (match["status"], match["bytes"]) == ("200", "10")
    assert match["referer"] == "http://example.com/from"
    assert match["agent"] == 'agent \\"quoted\\"'
    match = COMBINED.match(second)
    assert match, second
    assert (match["bytes"], match["referer"]) == ("-", "-")


def test_issue_21_common_format_is_the_default(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, "--access-log", "--access-log-format", "common")
    assert server.get("/size/3").status_code == 200
    [line] = read_lines(server.server_root / "access_log", 1)
    assert re.match(r"^127\.0\.0\.1 - - " + STAMP + r' "GET /size/3 HTTP/1\.1" 200 3$', line)


def test_issue_21_apache_directives(ferrule_server, mode_options):
    fields = [
        "%h", "%l", "%u", "%>s", "%b", "%B", "%D", "%T", "%{X-In}i", "%{X-Out}o",
        "%{X-Missing}i", "%{REQUEST_METHOD}e", "%P", "%L", "%m", "%U", "%q", "%H", "%%",
    ]  # fmt: skip
    server = ferrule_server(
        APP, *mode_options, "--access-log", "--access-log-format", "|".join(fields) + "|%t|%r"
    )
    response = server.get("/size/0?a=1", headers={"X-In": "in-value"})
    assert response.status_code == 200
    assert server.get("/size/1234").status_code == 200
    first, second = read_lines(server.server_root / "access_log", 2)
    values = first.split("|")
    seen = dict(zip(fields, values[: len(fields)], strict=True))
    assert seen["%h"] == "127.0.0.1"
    assert seen["%l"] == "-"
    assert seen["%u"] == "-"
    assert seen["%>s"] == "200"
    assert (seen["%b"], seen["%B"]) == ("-", "0")
    assert int(seen["%D"]) >= 0
    assert int(seen["%T"]) >= 0
    assert seen["%{X-In}i"] == "in-value"
    assert seen["%{X-Out}o"] == "out-value"
    assert seen["%{X-Missing}i"] == "-"
    assert seen["%{REQUEST_METHOD}e"] == "GET"
    assert int(seen["%P"]) in server_pids(server)
    assert re.fullmatch(r"[\w@-]+", seen["%L"]), seen["%L"]
    assert (seen["%m"], seen["%U"], seen["%q"], seen["%H"]) == (
        "GET",
        "/size/0",
        "?a=1",
        "HTTP/1.1",
    )
    assert seen["%%"] == "%"
    assert re.fullmatch(STAMP, values[len(fields)])
    assert values[len(fields) + 1] == "GET /size/0?a=1 HTTP/1.1"
    values = dict(zip(fields, second.split("|")[: len(fields)], strict=True))
    assert (values["%b"], values["%B"]) == ("1234", "1234")
    assert values["%L"] != seen["%L"]


def server_pids(server) -> set[int]:
    return {server.process.pid, *server.child_pids()}


def test_issue_21_request_id_is_the_one_the_application_sees(ferrule_server, mode_options):
    server = ferrule_server(
        "environ.wsgi", *mode_options, "--access-log", "--access-log-format", "%L %>s"
    )
    environ = server.get("/").json()["environ"]
    [line] = read_lines(server.server_root / "access_log", 1)
    assert line == f"{environ['mod_wsgi.request_id']} 200"


def test_issue_21_bytes_are_the_bytes_sent(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, "--access-log", "--access-log-format", "%B %>s")
    # A HEAD answer sends no body whatever the application made.
    assert requests.head(server.url + "/size/100", timeout=10).status_code == 200
    assert server.get("/size/100").status_code == 200
    assert read_lines(server.server_root / "access_log", 2) == ["0 200", "100 200"]


def test_issue_21_user_from_access_control(ferrule_server, mode_options):
    scripts = str(APPS / "auth" / "scripts.py")
    server = ferrule_server(
        "auth/app.wsgi",
        *mode_options,
        "--auth-user-script",
        scripts,
        "--access-log",
        "--access-log-format",
        "%u %>s",
    )
    token = base64.b64encode(b"spy:secret").decode()
    assert server.get("/", headers={"Authorization": f"Basic {token}"}).status_code == 200
    assert server.get("/").status_code == 401
    # As Apache: the user named by the credentials, even when they are refused.
    assert server.get("/", auth=("spy", "guess")).status_code == 401
    assert read_lines(server.server_root / "access_log", 3) == ["spy 200", "- 401", "spy 401"]


def test_issue_21_an_unknown_directive_is_refused_by_name(ferrule_server):
    server = ferrule_server(APP, "--access-log", "--access-log-format", "%h %Z", wait=False)
    assert server.process.wait(30) == 2
    assert "--access-log-format" in server.stderr() and "%Z" in server.stderr()


def test_issue_21_no_log_file_is_left_in_the_server_root_with_log_directory(
    ferrule_server, tmp_path
):
    logs = tmp_path / "logs"
    server = ferrule_server(APP, "--log-directory", str(logs))
    assert server.get("/").status_code == 200
    assert os.path.isdir(logs)
    assert not server.error_log_path.exists()


# --- Rotation and reopening ----------------------------------------------------------

PAD = "p" * 4000
ROTATION_REQUESTS = 1000
CLIENTS = 6


def get_all(server, paths: list[str], headers: dict | None = None) -> None:
    """GETs every path, from CLIENTS threads."""
    failures = []

    def client(part: list[str]):
        for path in part:
            # A connection per request, so that in embedded mode every process accepts some.
            with requests.Session() as session:
                response = session.get(server.url + path, headers=headers, timeout=30)
                if response.status_code != 200:
                    failures.append((path, response.status_code))

    threads = [threading.Thread(target=client, args=(paths[i::CLIENTS],)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:5]


def lines_of_all(directory, name: str) -> tuple[list[str], list[str]]:
    """Every line of the log `name` and of its rotated files, and the rotated files' names."""
    rotated = sorted(path.name for path in directory.glob(name + ".*"))
    lines = []
    for file_name in [*rotated, name]:
        lines += (directory / file_name).read_text().splitlines()
    return lines, rotated


def test_issue_21_rotation_under_load_loses_and_splits_no_line(
    ferrule_server, mode_options, tmp_path
):
    # 4 KB lines from 3 processes (embedded mode) or the front end (daemon mode): a
    # rotation every 250 lines, while 6 clients keep requests coming.
    logs = tmp_path / "logs"
    server = ferrule_server(
        APP,
        *mode_options,
        "--processes",
        "3",
        "--access-log",
        "--log-directory",
        str(logs),
        "--rotate-logs",
        "--max-log-size",
        "1",
        "--access-log-format",
        "%{X-Pad}i %U %P",
    )
    get_all(server, [f"/n/{i}" for i in range(ROTATION_REQUESTS)], {"X-Pad": PAD})
    assert server.stop() == 0
    lines, rotated = lines_of_all(logs, "access_log")
    assert len(lines) == ROTATION_REQUESTS
    numbers = []
    for line in lines:
        match = re.fullmatch(PAD + r" /n/(\d+) (\d+)", line)
        assert match, line[:80] + "..." + line[-80:]
        numbers.append(int(match[1]))
    assert sorted(numbers) == list(range(ROTATION_REQUESTS))
    assert len(rotated) >= 3, rotated
    for name in rotated:
        assert re.fullmatch(r"access_log\.\d{4}-\d\d-\d\d-\d\d_\d\d_\d\d(\.\d+)?", name), name
        assert (logs / name).stat().st_size >= 1024 * 1024
    if mode_options:
        # Several processes wrote, and rotated, the one log.
        assert len({line.rsplit(" ", 1)[1] for line in lines}) > 1


def test_issue_21_the_error_log_rotates_with_lines_from_several_daemons(ferrule_server, tmp_path):
    count = 600
    server = ferrule_server(
        APP, "--processes", "3", "--threads", "2", "--rotate-logs", "--max-log-size", "1"
    )
    get_all(server, [f"/print/{i}" for i in range(count)])
    assert server.stop() == 0
    lines, rotated = lines_of_all(server.server_root, "error_log")
    printed = [line for line in lines if "printed" in line]
    assert len(printed) == count
    assert all(re.search(r"printed \d+ pid \d+ p{3000}$", line) for line in printed)
    assert sorted(int(line.split("printed ")[1].split()[0]) for line in printed) == list(
        range(count)
    )
    assert len({line.split(" pid ")[-1].split()[0] for line in printed}) > 1
    assert rotated


def test_issue_21_sigusr1_reopens_the_logs_for_logrotate(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, "--access-log")
    root = server.server_root
    assert server.get("/before").status_code == 200
    read_lines(root / "access_log", 1)
    # What logrotate does: move the files, then signal the server.
    os.rename(root / "access_log", root / "access_log.1")
    os.rename(root / "error_log", root / "error_log.1")
    children = set(server.child_pids())
    server.signal(signal.SIGUSR1)
    # The restart is done once every process is a new one.
    wait_until(lambda: server.child_pids() and not children & set(server.child_pids()), 30)
    assert server.get("/after").status_code == 200
    assert server.get("/fail").status_code == 500
    after = read_lines(root / "access_log", 2)
    assert '"GET /after HTTP/1.1" 200' in after[0]
    assert "GET /before" in (root / "access_log.1").read_text()
    assert "/after" not in (root / "access_log.1").read_text()
    wait_until(lambda: "failed on purpose" in (root / "error_log").read_text())


def test_issue_21_rotatelogs_executable_takes_every_line(ferrule_server, mode_options, tmp_path):
    # As mod_wsgi-express: `rotatelogs FILE.%Y-%m-%d-%H_%M_%S 1M` reads the logs.
    rotatelogs = shutil.which("rotatelogs")
    assert rotatelogs, "rotatelogs (Debian's apache2-utils) is not installed"
    logs = tmp_path / "logs"
    server = ferrule_server(
        APP,
        *mode_options,
        "--processes",
        "3",
        "--access-log",
        "--log-directory",
        str(logs),
        "--rotate-logs",
        "--rotatelogs-executable",
        rotatelogs,
        "--max-log-size",
        "1",
        "--access-log-format",
        "%{X-Pad}i %U %P",
    )
    get_all(server, [f"/n/{i}" for i in range(ROTATION_REQUESTS)], {"X-Pad": PAD})
    assert server.get("/fail").status_code == 500
    assert server.stop() == 0

    def every_line_written():
        lines = []
        for path in sorted(logs.glob("access_log.*")):
            lines += path.read_text().splitlines()
        return lines if len(lines) >= ROTATION_REQUESTS + 1 else None

    lines = wait_until(every_line_written)
    assert len(lines) == ROTATION_REQUESTS + 1
    numbers = [int(m[1]) for line in lines if (m := re.fullmatch(PAD + r" /n/(\d+) \d+", line))]
    assert sorted(numbers) == list(range(ROTATION_REQUESTS))
    assert len(list(logs.glob("access_log.*"))) >= 2
    assert not (logs / "access_log").exists()
    wait_until(
        lambda: any("failed on purpose" in path.read_text() for path in logs.glob("error_log.*"))
    )


def test_issue_21_verbose_debugging_logs_each_request_s_way(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, "--verbose-debugging")
    assert server.get("/traced").status_code == 200
    log = wait_until(lambda: "answered: status 200" in server.error_log() and server.error_log())
    lines = [line for line in log.splitlines() if "[ferrule:debug]" in line]
    received = [line for line in lines if "received: GET /traced" in line]
    assert len(received) == 1, lines
    request_id = received[0].split("request ")[1].split()[0]
    environ_id_line = [
        line for line in lines if f"request {request_id} answered: status 200" in line
    ]
    assert environ_id_line, lines
    assert any("connection accepted on 127.0.0.1:" in line for line in lines)
    assert any(f"request {request_id} queued" in line for line in lines)
    if not mode_options:
        assert any(
            re.search(
                rf"request {request_id} \(GET /traced\) sent to daemon process 0 \(pid \d+\)", line
            )
            for line in lines
        ), lines
    # Without the option, none of it.
    quiet = ferrule_server(APP, *mode_options)
    assert quiet.get("/traced").status_code == 200
    assert "[ferrule:debug]" not in quiet.error_log()


def test_issue_21_error_log_format(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, "--error-log-format", "%l|%m|%P|%a|%M")
    assert server.get("/fail").status_code == 500
    log = wait_until(lambda: "failed on purpose" in server.error_log() and server.error_log())
    traceback = [line for line in log.splitlines() if line.startswith("error|wsgi|")]
    assert any(line.endswith("|Traceback (most recent call last):") for line in traceback), log
    assert any("RuntimeError: failed on purpose for the error log" in line for line in traceback)
    _, _, pid, client, _ = traceback[0].split("|", 4)
    assert int(pid) in server_pids(server)
    assert client.startswith("127.0.0.1:")


def test_issue_21_an_unknown_error_log_directive_is_refused_by_name(ferrule_server):
    server = ferrule_server(APP, "--error-log-format", "%M %F", wait=False)
    assert server.process.wait(30) == 2
    assert "--error-log-format" in server.stderr() and "%F" in server.stderr()
