"""The report in a real browser: headless Chromium driven through chromedriver (WebDriver).

The report of the tiny DAG (the same code as the demo's) must load with no console errors,
no request other than file: and data: URLs, and every inline image decoded; a screenshot is
saved to test-artifacts/report.png. A page with an outside image and a console error must be
caught, so the checks cannot pass vacuously.

Chromium and chromedriver come from Debian (chromium, chromium-driver); where they are
missing the test installs them with apt (root needed). Without them the test is skipped
with the reason, except under CI=true, where it fails.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--window-size=1280,2000",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test must run in CI but: {reason}")
    pytest.skip(f"no headless Chromium here: {reason}")


def browser_binaries() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def webdriver():
    """A running chromedriver: yields a function that calls its WebDriver HTTP API."""
    found = browser_binaries()
    if found is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            unavailable("chromium/chromedriver missing and apt-get as root not possible")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update", "-qq"],
            [
                "apt-get",
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "chromium",
                "chromium-driver",
            ],
        ):
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=env,
                stdin=subprocess.DEVNULL,
                timeout=900,
            )
            if done.returncode != 0:
                unavailable(f"{' '.join(cmd)} failed: {done.stderr[-1500:]}")
        found = browser_binaries()
        if found is None:
            unavailable("apt installed chromium-driver but no chromedriver is on PATH")
    chromium, driver = found
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [driver, f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def call(method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"{}").get("value")

    for _ in range(100):
        try:
            if call("GET", "/status").get("ready"):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        unavailable("chromedriver did not start")
    call.chromium = chromium
    yield call
    proc.terminate()
    proc.wait(timeout=30)


def load(call, page: Path, screenshot: Path | None = None) -> dict:
    """Open `page`; return console entries, requested URLs and images that failed to decode."""
    caps = {
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": call.chromium, "args": FLAGS},
        "goog:loggingPrefs": {"browser": "ALL", "performance": "ALL"},
    }
    session = call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]
    try:
        call("POST", f"/session/{session}/url", {"url": page.resolve().as_uri()})
        broken = call(
            "POST",
            f"/session/{session}/execute/sync",
            {
                "script": "return Array.from(document.images)"
                ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);",
                "args": [],
            },
        )
        title = call("GET", f"/session/{session}/title")
        console = call("POST", f"/session/{session}/se/log", {"type": "browser"})
        perf = call("POST", f"/session/{session}/se/log", {"type": "performance"})
        if screenshot is not None:
            png = call("GET", f"/session/{session}/screenshot")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(png))
    finally:
        call("DELETE", f"/session/{session}")
    urls = []
    for entry in perf:
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return {"console": console, "urls": urls, "broken": broken, "title": title}


def outside(urls: list[str]) -> list[str]:
    return [u for u in urls if not u.startswith(("file:", "data:"))]


def test_the_checks_catch_an_outside_request_and_a_console_error(webdriver, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        "<img alt='remote' src='http://127.0.0.1:9/x.png'>"
        "<script>console.error('boom')</script></body></html>"
    )
    seen = load(webdriver, page)
    assert outside(seen["urls"]) == ["http://127.0.0.1:9/x.png"]
    assert any("boom" in e["message"] and e["level"] == "SEVERE" for e in seen["console"])
    assert seen["broken"] == ["remote"]


def test_the_report_loads_offline_without_errors(webdriver, run):
    workdir, _ = run
    report = workdir / "results/report.html"
    shot = ARTIFACTS / "report.png"
    seen = load(webdriver, report, screenshot=shot)
    assert seen["title"] == "FER pipeline report"
    errors = [e for e in seen["console"] if e["level"] in ("SEVERE", "WARNING")]
    assert not errors, errors
    assert not outside(seen["urls"]), outside(seen["urls"])
    assert seen["urls"] and seen["urls"][0].startswith("file:")
    assert seen["broken"] == []
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
