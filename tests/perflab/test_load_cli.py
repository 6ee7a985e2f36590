"""`perflab load`, `report` and `compare` as a user runs them: subprocesses, stderr not a TTY."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from harness_helpers import perflab_cli, saved_run

pytestmark = pytest.mark.slow  # real load against real processes

CONTRACT = ["experiment", "variant", "endpoint", "requests", "failures", "rps"]
CONTRACT += ["p50_ms", "p95_ms", "p99_ms"]
UNCORRECTED = [f"p{p}_ms_uncorrected" for p in (50, 90, 95, 99)]


def check_run_folder(path) -> pd.DataFrame:
    for name in ("summary.csv", "manifest.json", "report.html", "samples.csv.gz", "metrics.csv"):
        assert (path / name).is_file(), name
    pngs = sorted(p.name for p in (path / "plots").glob("*.png"))
    assert {"load-percentiles.png", "load-cdf.png", "load-timeline.png"} <= set(pngs)
    assert "load-errors.png" in pngs
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["interrupted"] is False
    assert all(f"plots/{p}" in manifest["plots"] for p in pngs)
    summary = pd.read_csv(path / "summary.csv")
    assert set(CONTRACT) <= set(summary.columns)
    return summary


@pytest.fixture(scope="module")
def load_runs(tmp_root):
    """Two closed-model runs (20 ms and 5 ms servers) and one open-model Poisson run."""
    from perflab.targets import start_target

    runs = {}
    with start_target("sleep", 20, log_dir=tmp_root / "targets") as slow:
        r = perflab_cli(
            "load", "--host", slow.url, "--path", "/", "--users", "2", "--duration", "3"
        )
        assert r.returncode == 0, r.stderr
        runs["slow"] = (saved_run(r.stdout), r)
    with start_target("sleep", 5, fail_every=5, log_dir=tmp_root / "targets") as fast:
        r = perflab_cli(
            "load", "--host", fast.url, "--path", "/", "--users", "2", "--duration", "3"
        )
        assert r.returncode == 0, r.stderr
        runs["fast"] = (saved_run(r.stdout), r)
        r = perflab_cli(
            "load", "--host", fast.url, "--path", "/", "--rate", "40", "--poisson",
            "--duration", "3", "--warmup", "0.5",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        runs["open"] = (saved_run(r.stdout), r)
    return runs


def test_closed_load_writes_the_results_contract(load_runs) -> None:
    path, proc = load_runs["slow"]
    summary = check_run_folder(path)
    row = summary.iloc[0]
    assert row["experiment"] == "load" and row["variant"] == "target"
    assert row["failures"] == 0 and row["requests"] > 100
    assert 20 <= row["p50_ms"] < 30
    assert not set(UNCORRECTED) & set(summary.columns)
    # progress is quiet off a TTY: one line per load on stderr, not a redrawn bar
    assert len(proc.stderr.strip().splitlines()) <= 3, proc.stderr
    assert "target:" in proc.stderr and "req/s" in proc.stderr


def test_warmup_is_excluded_from_the_summary(load_runs) -> None:
    path, _ = load_runs["slow"]
    samples = pd.read_csv(path / "samples.csv.gz")
    summary = pd.read_csv(path / "summary.csv")
    warm = samples["t_intended"] < samples["t_intended"].min() + 1.0  # --warmup default 1 s
    assert warm.sum() > 10
    assert summary["requests"].iloc[0] == (~warm).sum()


def test_open_poisson_load_adds_uncorrected_columns_and_counts_errors(load_runs) -> None:
    path, _ = load_runs["open"]
    summary = check_run_folder(path)
    assert set(UNCORRECTED) <= set(summary.columns)
    row = summary.iloc[0]
    # corrected (from intended start) is never below uncorrected (from actual send)
    assert row["p99_ms"] >= row["p99_ms_uncorrected"] - 0.01
    assert 0.1 < row["failures"] / row["requests"] < 0.3  # the server fails every 5th
    samples = pd.read_csv(path / "samples.csv.gz")
    gaps = np.diff(np.sort(samples["t_intended"].to_numpy()))
    # Poisson arrivals: exponential gaps (coefficient of variation ~1), mean 1/rate
    assert 0.6 < gaps.std() / gaps.mean() < 1.5
    assert 0.018 < gaps.mean() < 0.035
    # the generator's lateness is its own column: latency = lateness + time from sending
    assert (samples["lateness_ms"] >= -0.01).all()
    assert np.allclose(
        samples["latency_ms"], samples["lateness_ms"] + samples["service_ms"], atol=1e-3
    )
    closed = pd.read_csv(load_runs["fast"][0] / "samples.csv.gz")
    assert closed["t_intended"].equals(closed["t_start"])
    assert (closed["lateness_ms"] == 0).all()


def test_report_and_compare_on_real_runs(load_runs) -> None:
    slow, fast = load_runs["slow"][0], load_runs["fast"][0]
    (slow / "report.html").unlink()
    r = perflab_cli("report", str(slow))
    assert r.returncode == 0, r.stderr
    html = (slow / "report.html").read_text()
    assert "p50_ms" in html and html.count("data:image/png;base64") >= 4
    r = perflab_cli("compare", str(slow), str(fast))
    assert r.returncode == 0, r.stderr
    print(r.stdout)
    lines = [ln for ln in r.stdout.splitlines() if ln.strip().startswith("load")]
    assert len(lines) == 2 and all("faster" in ln for ln in lines)  # B (5 ms) beats A (20 ms)


def test_non_loopback_target_is_refused_in_one_line() -> None:
    r = perflab_cli("load", "--host", "http://192.0.2.1:80", "--path", "/", "--users", "1")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--allow-remote" in r.stderr
    assert r.stdout == ""


def test_load_on_a_service_scrapes_its_metrics(start_catalog) -> None:
    svc = start_catalog("t-harness-load", queries="optimized", cache="none")
    r = perflab_cli(
        "load", "--host", svc.url, "--path", "/products/1", "--users", "2", "--duration", "2",
        "--warmup", "0.5",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    path = saved_run(r.stdout)
    metrics = pd.read_csv(path / "metrics.csv")
    assert {"http_requests_total", "process_resident_memory_bytes"} <= set(metrics["metric"])
    # the lab did not start what `load` loads: the manifest says so, and what it scraped there
    target = json.loads((path / "manifest.json").read_text())["target"]
    assert target["external"] is True and target["url"] == svc.url
    assert target["metrics"] == "scraped through the URL"
    assert (path / "plots" / "load-metrics.png").is_file()
