"""`loadtests/lab.py` driven by hand and from Locust's web UI, through its Locust options."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from perflab.loadgen import LAB_LOCUSTFILE, LocustSpec, read_samples, start_locust
from perflab.procs import free_port, http_ok, wait_until
from perflab.targets import Target, start_target

pytestmark = pytest.mark.slow  # real Locust processes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def target(tmp_root: Path) -> Iterator[Target]:
    with start_target("sleep", 2, log_dir=tmp_root / "targets") as t:
        yield t


def locust_by_hand(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", "loadtests/lab.py", "--headless", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_by_hand_without_options_it_requests_healthz_and_says_so(target, tmp_path) -> None:
    samples = tmp_path / "s.csv"
    r = locust_by_hand(
        "-H", target.url, "-u", "2", "-r", "2", "-t", "2s", "--perflab-samples", str(samples)
    )
    assert r.returncode == 0, r.stderr
    assert "no --mix given: requesting /healthz only" in r.stderr
    got = read_samples(samples)
    assert len(got) > 10 and set(got["endpoint"]) == {"GET /healthz"}
    assert got["ok"].all()


def test_by_hand_the_options_choose_the_mix_and_the_open_model(target, tmp_path) -> None:
    samples = tmp_path / "s.csv"
    r = locust_by_hand(
        "-H", target.url, "-u", "5", "-r", "5", "-t", "3s", "--perflab-samples", str(samples),
        "--mix", "caching", "--products", "20", "--arrival-rate", "20",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = read_samples(samples)
    assert set(got["endpoint"]) == {"GET /products/{id}"}
    gaps = np.diff(got["t_intended"].to_numpy())
    assert np.allclose(gaps, 0.05, atol=1e-4)  # 20 per second, on the schedule
    assert (got["lateness_ms"] >= -0.01).all()
    assert np.allclose(got["latency_ms"], got["service_ms"] + got["lateness_ms"], atol=1e-3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mix", "nope"], "unknown mix 'nope'"),
        (["--mix", "/x", "--arrival-rate", "fast"], "--arrival-rate 'fast' is not a float"),
        (["--mix", "/x", "--think-time", "3,1"], "--think-time is MIN,MAX seconds"),
    ],
)
def test_by_hand_a_bad_option_is_one_line_and_exit_2(target, args, message) -> None:
    r = locust_by_hand("-H", target.url, "-u", "1", "-t", "1s", *args)
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()]
    assert errors == [f"loadtests/lab.py: error: {errors[0].split('error: ', 1)[1]}"], r.stderr
    assert message in errors[0]


def test_the_web_ui_offers_the_options_and_a_swarm_uses_them(target, tmp_path) -> None:
    samples = tmp_path / "s.csv"
    port = free_port()
    spec = LocustSpec(
        LAB_LOCUSTFILE,
        target.url,
        users=3,
        spawn_rate=3,
        web_port=port,
        files=tmp_path / "locust-ui",
        samples=samples,
        options=["--mix", "/healthz", "--loopback-only"],
    )
    (proc,) = start_locust(spec, tmp_path / "locust-ui.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(http_ok(url + "/"), proc, 60, "serving its web UI")
        page = httpx.get(url + "/", timeout=10).text
        for shown in ("arrival_rate", "think_time", "products", "/healthz"):
            assert shown in page, shown
        for hidden in ("loopback_only", "ca_file", "perflab_samples"):
            assert hidden not in page, hidden
        # a swarm from the form: another mix and the open model at 25 requests/s
        form = {
            "user_count": 5,
            "spawn_rate": 5,
            "host": target.url,
            "mix": "/products/{product}",
            "arrival_rate": "25",
            "arrivals": "constant",
        }
        resp = httpx.post(url + "/swarm", data=form, timeout=10)
        assert resp.json()["success"], resp.text
        deadline = time.monotonic() + 30
        while len(read_samples(samples)) < 40 and time.monotonic() < deadline:
            time.sleep(0.25)
        httpx.post(url + "/stop", timeout=10)
        got = read_samples(samples)
        assert len(got) >= 40
        assert set(got["endpoint"]) == {"GET /products/{product}"}
        gaps = np.diff(got["t_intended"].to_numpy())
        assert np.allclose(np.median(gaps), 0.04, atol=1e-4)
    finally:
        proc.stop(timeout=60, sig=signal.SIGINT)  # as Ctrl-C: Locust writes its HTML report
    assert (tmp_path / "locust-ui.html").is_file()
