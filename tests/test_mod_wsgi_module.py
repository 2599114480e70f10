"""Issue 23: `import mod_wsgi` inside the application, as under mod_wsgi: the module the
server puts into sys.modules before the application loads (docs/python.md)."""

import json
import signal
from concurrent.futures import ThreadPoolExecutor

from conftest import wait_until

APP = "mod_wsgi_module.wsgi"


def stop_lines(path):
    """The JSON lines the application's shutdown subscriber wrote so far."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_module_facts_win_over_an_installed_mod_wsgi_package(
    ferrule_server, mode_options, tmp_path
):
    decoy = tmp_path / "site"
    (decoy / "mod_wsgi").mkdir(parents=True)
    (decoy / "mod_wsgi" / "__init__.py").write_text("version = (9, 9, 9)\n")
    server = ferrule_server(
        APP,
        "--processes",
        "2",
        "--threads",
        "3",
        "--python-path",
        str(decoy),
        *mode_options,
    )
    facts = server.get("/facts").json()
    assert facts["version"] == [4, 3, 0]
    assert facts["environ_version"] == facts["version"]
    assert facts["file"] is None, "the installed package was imported instead"
    expected_group = "" if mode_options else f"127.0.0.1:{server.port}"
    assert facts["process_group"] == expected_group
    assert facts["environ_process_group"] == expected_group
    assert facts["application_group"] == ""
    assert facts["maximum_processes"] == 2
    assert facts["threads_per_process"] == 3
    assert facts["server_metrics"] is None, "server_metrics() answers only with --server-metrics"
    assert "outside of a request" in facts["request_data_outside_a_request"]


def test_process_and_server_metrics(ferrule_server, mode_options, tmp_path):
    server = ferrule_server(APP, "--threads", "2", "--server-metrics", *mode_options)
    for _ in range(3):
        assert server.get("/").status_code == 200
    with ThreadPoolExecutor(1) as pool:
        marker = tmp_path / "busy"
        blocked = pool.submit(server.get, f"/block?file={marker}")
        wait_until(marker.exists)
        metrics = server.get("/metrics").json()
        marker.unlink()
        assert blocked.result().status_code == 200
    process = metrics["process"]
    assert process["pid"] == server.get("/facts").json()["pid"]
    # Three requests, the blocked one and this one.
    assert process["request_count"] == 5
    assert process["active_requests"] == 2
    assert process["request_threads"] == 2
    assert [thread["thread_id"] for thread in process["threads"]] == [1, 2]
    assert sum(thread["request_count"] for thread in process["threads"]) == 5
    assert process["request_busy_time"] > 0
    assert process["memory_rss"] > 1_000_000
    assert process["memory_max_rss"] >= process["memory_rss"] // 2
    assert process["cpu_user_time"] > 0
    assert process["current_time"] >= process["restart_time"]

    scoreboard = metrics["server"]
    assert scoreboard["thread_limit"] == 2
    assert scoreboard["server_limit"] == 1
    [entry] = scoreboard["processes"]
    assert entry["pid"] == process["pid"]
    assert not entry["quiescing"]
    workers = entry["workers"]
    assert sorted(worker["status"] for worker in workers) == ["W", "W"]
    requests = sorted(worker["request"] for worker in workers)
    assert requests == ["GET /block?file=" + str(marker), "GET /metrics"]
    assert sum(worker["access_count"] for worker in workers) == 5


def test_events_and_request_data(ferrule_server, mode_options):
    server = ferrule_server(APP, "--threads", "1", *mode_options)
    data = server.get("/data").json()
    assert data == {"from_subscriber": "/data", "from_application": True}
    replaced = server.get("/replaced")
    assert replaced.text == "replaced by a subscriber"
    assert server.get("/fail").status_code == 500
    events = server.get("/events").json()

    started = [event for event in events if event["name"] == "request_started"]
    assert {
        "request_id",
        "thread_id",
        "request_data",
        "request_environ",
        "application_object",
        "server_pid",
        "request_start",
        "queue_start",
        "daemon_start",
        "application_start",
    } <= set(started[0]["keys"])
    assert all(event["thread_id"] == 1 for event in started)
    times = [started[0][key] for key in ("queue_start", "daemon_start")]
    if "--embedded-mode" in mode_options:
        assert times == [0.0, 0.0]
    else:
        # As in the environ: the front end queued it, the daemon received it.
        assert 0 < started[0]["request_start"] <= times[0] <= times[1]
        assert times[1] <= started[0]["application_start"]

    finished = [event for event in events if event["name"] == "request_finished"]
    assert [event["status"] for event in finished] == [200, 200, 500]
    assert finished[0]["data"] == {"from_subscriber": "/data", "from_application": True}
    assert {"application_finish", "application_time", "cpu_time", "status"} <= set(
        finished[0]["keys"]
    )
    assert finished[0]["application_time"] >= 0
    assert [event["request_id"] for event in finished] == [
        event["request_id"] for event in started[:3]
    ]

    [exception] = [event for event in events if event["name"] == "request_exception"]
    assert "failing on purpose" in exception["exception"]
    assert exception["data"] == {"from_subscriber": "/fail", "before_failing": 1}
    assert exception["request_id"] == finished[2]["request_id"]
    assert "failing on purpose" in server.error_log()


def test_request_data_without_subscribers(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, env={"MOD_WSGI_TEST_NO_SUBSCRIBER": "1"})
    assert server.get("/data").json() == {"from_application": True}
    assert server.get("/data").json() == {"from_application": True}, "a fresh dict per request"


def test_shutdown_subscriber_runs_at_sigterm(ferrule_server, mode_options, tmp_path):
    stop_file = tmp_path / "stopped.jsonl"
    server = ferrule_server(APP, *mode_options, env={"MOD_WSGI_TEST_STOP_FILE": str(stop_file)})
    pid = server.get("/facts").json()["pid"]
    assert stop_lines(stop_file) == []
    assert server.stop() == 0
    assert stop_lines(stop_file) == [
        {"pid": pid, "name": "process_stopping", "shutdown_reason": "shutdown_signal"}
    ]


def test_shutdown_subscriber_runs_at_a_restart(ferrule_server, mode_options, tmp_path):
    stop_file = tmp_path / "stopped.jsonl"
    server = ferrule_server(APP, *mode_options, env={"MOD_WSGI_TEST_STOP_FILE": str(stop_file)})
    old_pid = server.get("/facts").json()["pid"]
    server.signal(signal.SIGHUP)
    [line] = wait_until(lambda: stop_lines(stop_file), timeout=20)
    assert line["pid"] == old_pid
    assert line["shutdown_reason"] == "shutdown_signal"
    new_pid = wait_until(lambda: (pid := server.get("/facts").json()["pid"]) != old_pid and pid)
    assert new_pid != old_pid


def test_shutdown_reason_names_the_limit_a_daemon_reached(ferrule_server, tmp_path):
    stop_file = tmp_path / "stopped.jsonl"
    server = ferrule_server(
        APP, "--maximum-requests", "2", env={"MOD_WSGI_TEST_STOP_FILE": str(stop_file)}
    )
    old_pid = server.get("/facts").json()["pid"]
    server.get("/")
    [line] = wait_until(lambda: stop_lines(stop_file), timeout=20)
    assert line == {
        "pid": old_pid,
        "name": "process_stopping",
        "shutdown_reason": "maximum_requests",
    }


def events_of(events, request_id):
    return [event for event in events if event.get("request_id") == request_id]


def test_events_count_a_posted_body_and_a_streamed_response(ferrule_server, mode_options):
    server = ferrule_server(APP, "--threads", "1", *mode_options)
    body = b"x" * 100_000
    response = server.post("/stream?chunks=3&size=1000", data=body)
    assert response.status_code == 200
    assert response.content == b"y" * 3000
    listed = server.get("/")
    events = server.get("/events").json()

    [stream_started] = [event for event in events if event["name"] == "request_started"][:1]
    stream = events_of(events, stream_started["request_id"])
    assert [event["name"] for event in stream] == [
        "request_started",
        "response_started",
        "request_finished",
    ]
    _, response_started, finished = stream
    assert set(response_started["keys"]) == {
        "request_id",
        "request_data",
        "response_status",
        "response_headers",
        "exception_info",
    }
    assert response_started["response_status"] == "200 OK"
    assert response_started["response_headers"] == [["Content-Type", "application/octet-stream"]]
    assert response_started["exception_info"] == "None"

    assert finished["input_length"] == len(body)
    # The application read until read() gave b"": every call counts.
    assert finished["input_reads"] == finished["data"]["reads"] == 14
    assert finished["output_writes"] == 3
    assert finished["output_length"] == 3000
    assert finished["input_time"] >= 0
    assert finished["output_time"] >= 0

    # A list answer: one write of its one item, no input read.
    listed_id = [event for event in events if event["name"] == "request_started"][1]["request_id"]
    [*_, listed_finished] = events_of(events, listed_id)
    assert listed_finished["name"] == "request_finished"
    assert listed_finished["output_writes"] == 1
    assert listed_finished["output_length"] == len(listed.content)
    assert listed_finished["input_reads"] == 0
    assert listed_finished["input_length"] == 0


def test_active_requests_lists_the_requests_in_progress(ferrule_server, mode_options, tmp_path):
    server = ferrule_server(APP, "--threads", "2", *mode_options)
    assert server.get("/active").json() == ["/active"]
    with ThreadPoolExecutor(1) as pool:
        marker = tmp_path / "busy"
        blocked = pool.submit(server.get, f"/block?file={marker}")
        wait_until(marker.exists)
        during = server.get("/active").json()
        marker.unlink()
        assert blocked.result().status_code == 200
    assert during == ["/active", "/block"]
    assert server.get("/active").json() == ["/active"], "finished requests leave the dict"


def test_active_requests_stays_empty_without_subscribers(ferrule_server, mode_options):
    server = ferrule_server(APP, *mode_options, env={"MOD_WSGI_TEST_NO_SUBSCRIBER": "1"})
    assert server.get("/active").json() == []


def test_events_of_write_calls_and_a_second_start_response(ferrule_server, mode_options):
    server = ferrule_server(APP, "--threads", "1", *mode_options)
    assert server.get("/write").text == "first second"
    second = server.get("/second-start")
    assert (second.status_code, second.text) == (503, "unavailable")
    events = server.get("/events").json()
    write_id, second_id = [
        event["request_id"] for event in events if event["name"] == "request_started"
    ][:2]

    [*_, written] = events_of(events, write_id)
    assert (written["output_writes"], written["output_length"]) == (2, len("first second"))

    second_events = events_of(events, second_id)
    assert [event["name"] for event in second_events] == [
        "request_started",
        "response_started",
        "response_started",
        "request_finished",
    ]
    first, again = second_events[1:3]
    assert (first["response_status"], first["exception_info"]) == ("200 OK", "None")
    assert again["response_status"] == "503 Service Unavailable"
    assert "KeyError" in again["exception_info"] and "changed its mind" in again["exception_info"]
    assert second_events[-1]["status"] == 503
