"""`perflab ui`: Locust's web UI on a lab variant, driven from a real headless Chromium.

The browser test starts a swarm from the page as a user would (form, START), waits for request
rows in the statistics table, stops the swarm, saves a screenshot to test-artifacts/, and
checks that the session was recorded and saved as a run. The CLI tests check that Ctrl-C stops
Locust and the service, and that a bad name is one line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness_helpers import ROOT, perflab_cli, processes_of, wait_gone

from perflab import webui
from perflab.lab import Lab

# Debian's packages (.ci/install-browser); elsewhere point these at your own pair.
CHROMIUM = Path(os.environ.get("PERFLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("PERFLAB_CHROMEDRIVER", "/usr/bin/chromedriver"))
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]


def _have_browser() -> bool:
    return CHROMIUM.is_file() and CHROMEDRIVER.is_file()


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Chromium through Debian's chromedriver (installed on demand when root), never a
    downloaded driver: the Service path is explicit, so Selenium Manager is not consulted."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed: pip install -e '.[dev]'"
    )
    from selenium.webdriver.chrome.service import Service

    if not _have_browser():
        out = subprocess.run(
            [str(ROOT / ".ci" / "install-browser")], capture_output=True, text=True, timeout=900
        ).stdout.strip()
        if not _have_browser():
            pytest.skip(
                f"no headless Chromium for the web UI test ({CHROMIUM}, {CHROMEDRIVER}): "
                f"{out or 'not installed'}"
            )
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in [*FLAGS, f"--user-data-dir={tempfile.mkdtemp(prefix='perflab-chromium-')}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _set(field, value: str) -> None:
    from selenium.webdriver.common.keys import Keys

    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(value)


def _button(driver, label: str):
    """The button showing `label` (as rendered: the page upper-cases labels with CSS)."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.TAG_NAME, "button"):
        if button.text.strip().upper() == label:
            return button
    return None


def _request_rows(driver) -> dict[str, int]:
    """The statistics table as {request name: # requests}, read from the page in one script
    (the page re-renders its rows every 2 s: element handles would go stale in between)."""
    rows = driver.execute_script(
        "return Array.from(document.querySelectorAll('table tbody tr'))"
        ".map(r => Array.from(r.cells).map(c => c.innerText.replace(/\\s+/g, ' ').trim()))"
    )
    return {
        cells[1]: int(cells[2])
        for cells in rows or []
        if len(cells) >= 3 and cells[1] != "Aggregated" and cells[2].isdigit()
    }


def _wait_for(what: str, check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.slow  # a real service, Locust and browser
def test_swarm_started_from_the_page_shows_statistics_and_is_recorded(
    browser, database_url, tmp_path, artifacts
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    with (
        Lab(size="tiny", database_url=database_url, log_dir=tmp_path / "logs") as lab,
        webui.open(lab, "caching/memory", users=3) as ui,
    ):
        driver.get(ui.url)
        form = _wait_for("the start form", lambda: driver.find_elements(By.NAME, "userCount"))
        # prefilled from the experiment: the variant's URL and the requested users
        assert driver.find_element(By.NAME, "host").get_attribute("value") == ui.service.url
        assert form[0].get_attribute("value") == "3"
        _set(form[0], "2")
        _set(driver.find_element(By.NAME, "spawnRate"), "2")
        _button(driver, "START").click()

        rows = _wait_for(
            "request rows with counts > 0",
            lambda: {k: n for k, n in _request_rows(driver).items() if n > 20} or None,
        )
        assert list(rows) == ["GET /products/{id}"], rows
        _wait_for(  # the 2 users from the form (spawned at 2/s)
            "2 running users",
            lambda: httpx.get(ui.url + "/stats/requests", timeout=5).json()["user_count"] == 2,
        )

        _wait_for("the STOP button", lambda: _button(driver, "STOP")).click()
        _wait_for(
            "the swarm to stop",
            lambda: httpx.get(ui.url + "/stats/requests", timeout=5).json()["state"] == "stopped",
        )
        # the page polls every 2 s: wait until it shows the stop (and so the final counts)
        _wait_for(
            "the page to show STOPPED",
            lambda: "STOPPED" in driver.find_element(By.TAG_NAME, "body").text.upper(),
        )
        time.sleep(0.5)
        shown = _request_rows(driver)["GET /products/{id}"]
        shot = artifacts / "webui-statistics.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        time.sleep(1.0)  # the locustfile flushes its samples twice a second
        recorded = len(ui.samples())
        assert recorded >= shown > 20, (recorded, shown)

    # The session was saved like any run: samples, summary, report.
    run = ui.run
    assert run is not None and (run.path / "samples.csv.gz").exists()
    assert (run.path / "report.html").exists()
    summary = run.summary.set_index("endpoint").loc["GET /products/{id}"]
    assert summary["variant"] == "memory" and summary["requests"] >= shown
    assert summary["failures"] == 0
    assert not ui.service.running and not ui.locust.alive()


@pytest.mark.slow
def test_perflab_ui_stops_locust_and_the_service_on_sigint(database_url, tmp_path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PERFLAB_RESULTS_DIR": str(tmp_path / "results"),
        "PERFLAB_DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "perflab.cli", "ui", "caching/none", "--size", "tiny"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
    )
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Locust web UI:"):
                break
        out = "".join(lines)
        m = re.search(r"Locust web UI: (http://127\.0\.0\.1:\d+)", out)
        assert m, out + proc.stdout.read()
        page = httpx.get(m.group(1) + "/", timeout=10)
        assert page.status_code == 200 and "locust" in page.text.lower()
        children = processes_of(proc.pid)
        assert len(children) >= 2, children  # uvicorn and locust at least
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out + rest
    assert "No requests were recorded" in rest
    assert wait_gone(children, 5.0) == [], "children still running after Ctrl-C"
    assert processes_of(proc.pid) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "unknown experiment 'nope': choose one of queries, caching"),
        ("caching/nope", "experiment 'caching' has no variant 'nope': choose from none, memory"),
        ("caching/redis/x", "'caching/redis/x' is not EXPERIMENT or EXPERIMENT/VARIANT"),
    ],
)
def test_bad_name_is_one_line_and_exit_code_2(name, message) -> None:
    res = perflab_cli("ui", name, timeout=60)
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1 and message in res.stderr, res.stderr


@pytest.mark.slow
def test_a_non_loopback_host_typed_in_the_page_is_refused(database_url, tmp_path) -> None:
    """The form's host field is free text; the swarm must not leave this machine."""
    with (
        Lab(size="tiny", database_url=database_url, log_dir=tmp_path / "logs") as lab,
        webui.open(lab, "queries/optimized", users=2) as ui,
    ):
        remote = "http://192.0.2.1:8000"  # TEST-NET-1: never routed
        resp = httpx.post(
            ui.url + "/swarm", data={"user_count": 2, "spawn_rate": 2, "host": remote}, timeout=10
        )
        assert resp.json()["success"], resp.text

        def refused():
            stats = httpx.get(ui.url + "/stats/requests", timeout=5).json()
            return stats if stats["user_count"] == 0 and stats["errors"] else None

        stats = _wait_for("the users to be refused", refused, timeout=20)
        assert "is not a loopback address" in stats["errors"][0]["error"]
        assert [s["name"] for s in stats["stats"] if s["name"] != "Aggregated"] == [remote]
        assert ui.samples().empty
    assert ui.run is None  # nothing was sent, nothing to save


def test_webui_never_imports_locust() -> None:
    """gevent's monkey-patching hangs Jupyter kernels: Locust runs only in subprocesses."""
    code = (
        "import sys, perflab.webui, perflab.cli\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "locust" not in out.stdout and "gevent" not in out.stdout
