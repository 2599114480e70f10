"""Issue 23: --enable-telemetry, a live dashboard on 127.0.0.1:--telemetry-ui-port drawn
from the front end's counters, checked in headless Chromium; --telemetry-service and
--telemetry-options refused with the reason."""

import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from conftest import APPS, free_port, run_ferrule, wait_until

APP = "operations.wsgi"
CHROMIUM = shutil.which("chromium")


def telemetry(port, path="/telemetry.json"):
    return requests.get(f"http://127.0.0.1:{port}{path}", timeout=10)


def chromium(tmp_path, url, *arguments):
    """Headless Chromium on `url`; what it prints (the DOM with --dump-dom)."""
    result = subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=4000", *arguments, url,
        ],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")
def test_the_dashboard_shows_the_load_it_was_sent(ferrule_server, tmp_path):
    port = free_port()
    server = ferrule_server(
        APP, "--processes", "2", "--threads", "2", "--enable-telemetry",
        "--telemetry-ui-port", str(port), "--telemetry-interval", "0.2",
    )  # fmt: skip
    for _ in range(12):
        assert server.get("/").status_code == 200
    for _ in range(3):
        assert server.get("/status?code=404").status_code == 404
    marker = tmp_path / "slow"
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(server.get, f"/block?file={marker}")
        wait_until(marker.exists)
        # The dashboard sees the busy thread before the request is let go.
        wait_until(lambda: telemetry(port).json()["samples"][-1]["busy"] == 1)
        marker.unlink()
        assert slow.result().status_code == 200

    def settled():
        data = telemetry(port).json()
        sampled = sum(sample["requests"] for sample in data["samples"])
        return data["totals"]["requests"] == sampled == 16 and data["slowest"] and data

    data = wait_until(settled)
    assert data["totals"]["classes"] == [0, 13, 0, 3, 0]
    assert data["totals"]["process_starts"] == 2
    assert data["slowest"][0]["request"] == f"GET /block?file={marker}"
    last = data["samples"][-1]
    roles = sorted(process["role"] for process in last["processes"])
    assert roles == ["daemon 0", "daemon 1", "front end"]
    assert all(process["rss_bytes"] > 1_000_000 for process in last["processes"])

    url = f"http://127.0.0.1:{port}/"
    dom = chromium(tmp_path, url, "--dump-dom")
    assert '<div class="value" id="total-requests">16</div>' in dom
    assert '<div class="value" id="classes">2xx 13 · 4xx 3</div>' in dom
    assert '<div class="value" id="restarts">2 / 0 / 0</div>' in dom
    assert f"<td>GET /block?file={marker}</td>" in dom
    assert dom.count("<polyline") >= 6, "every chart drew its lines"

    screenshot = tmp_path / "telemetry.png"
    chromium(tmp_path, url, f"--screenshot={screenshot}", "--window-size=1280,1100")
    with Image.open(screenshot) as image:
        assert image.size == (1280, 1100)
        rgb = image.convert("RGB").tobytes()
    pixels = [tuple(rgb[index : index + 3]) for index in range(0, len(rgb), 3)]

    def near(colour, pixel):
        return sum(abs(a - b) for a, b in zip(colour, pixel, strict=True)) < 60

    # The first series of each chart is drawn in #1f77b4 and the p95 line in #d62728: the
    # charts are on the picture, not only in the DOM.
    assert sum(1 for pixel in pixels if near((0x1F, 0x77, 0xB4), pixel)) > 200
    assert sum(1 for pixel in pixels if near((0xD6, 0x27, 0x28), pixel)) > 20


def test_the_telemetry_port_serves_its_two_pages_on_loopback(ferrule_server):
    port = free_port()
    ferrule_server(APP, "--enable-telemetry", "--telemetry-ui-port", str(port))
    page = wait_until(lambda: telemetry(port, "/"))
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    # One page, nothing fetched from elsewhere: no script, style or image files.
    assert "<script>" in page.text
    assert "src=" not in page.text and "<link" not in page.text
    assert telemetry(port, "/elsewhere").status_code == 404
    assert requests.post(f"http://127.0.0.1:{port}/", timeout=10).status_code == 405
    head = requests.head(f"http://127.0.0.1:{port}/telemetry.json", timeout=10)
    assert head.status_code == 200 and head.content == b""
    listening = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    )
    assert listening.stdout.split()[3] == f"127.0.0.1:{port}"


def test_a_telemetry_port_in_use_stops_start_up_naming_the_option(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_ferrule(
            "start-server", str(APPS / APP), "--port", str(free_port()),
            "--server-root", str(tmp_path / "root"),
            "--enable-telemetry", "--telemetry-ui-port", str(port),
        )  # fmt: skip
    assert result.returncode != 0
    assert f"--telemetry-ui-port {port}: cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--telemetry-service", "unix:/tmp/mod_wsgi-telemetry.sock"],
            "--telemetry-service is not supported: mod_wsgi's telemetry datagrams have no documented byte format",
        ),
        (
            ["--telemetry-options", "+CaptureUserAgent"],
            "--telemetry-options is not supported: it chooses fields of the --telemetry-service datagrams",
        ),
        (
            ["--enable-telemetry", "--embedded-mode"],
            "--enable-telemetry and --embedded-mode disagree",
        ),
        (["--telemetry-interval", "0"], "'0' is not a number of seconds above 0"),
    ],
)
def test_telemetry_options_that_cannot_work_are_refused(arguments, message):
    result = run_ferrule("start-server", str(APPS / APP), *arguments)
    assert result.returncode == 2
    assert message in result.stderr
