"""A short real run of the demo experiments writes the whole results contract."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from perflab import experiments
from perflab.lab import Lab
from perflab.loadgen import LoadProfile
from perflab.results import SUMMARY_COLUMNS
from perflab.runner import run_experiments


@pytest.fixture(scope="module")
def demo_run(database_url, redis_url, tmp_root):
    exps = [experiments.get("queries"), experiments.get("caching")]
    profile = LoadProfile(model="closed", users=3, duration=4, warmup=1)
    with Lab(size="tiny", database_url=database_url, redis_url=redis_url,
             log_dir=tmp_root / "lab-logs") as lab:  # fmt: skip
        return run_experiments(exps, lab=lab, profile=profile, progress=False, echo=False)


def test_summary_has_the_contract_columns_and_one_row_per_variant(demo_run):
    summary = pd.read_csv(demo_run.path / "summary.csv")
    assert set(SUMMARY_COLUMNS) <= set(summary.columns)
    rows = set(zip(summary["experiment"], summary["variant"], strict=True))
    assert rows == {("queries", "naive"), ("queries", "optimized"), ("caching", "none"),
                    ("caching", "memory"), ("caching", "redis")}  # fmt: skip
    assert (summary["failures"] == 0).all()
    assert (summary["requests"] > 0).all()
    assert (summary["p50_ms"] <= summary["p95_ms"]).all()
    assert (summary["p95_ms"] <= summary["p99_ms"]).all()


def test_effects_point_the_right_way(demo_run):
    s = demo_run.summary.set_index(["experiment", "variant"])
    assert s.loc[("queries", "optimized"), "rps"] > s.loc[("queries", "naive"), "rps"]
    assert s.loc[("queries", "naive"), "db_queries_mean"] > 10
    assert s.loc[("queries", "optimized"), "db_queries_mean"] <= 3
    for cached in ("memory", "redis"):
        assert s.loc[("caching", cached), "cache_hit_ratio"] > 0.5
        assert (
            s.loc[("caching", cached), "db_queries_mean"]
            < s.loc[("caching", "none"), "db_queries_mean"]
        )


def test_manifest_samples_logs_metrics_plots_report(demo_run):
    path = demo_run.path
    manifest = json.loads((path / "manifest.json").read_text())
    for key in ("git_commit", "cpu_count", "packages", "started_at", "ended_at", "experiments"):
        assert key in manifest
    assert manifest["experiments"]["caching"]["variants"]["redis"]["settings"]["cache"] == "redis"
    assert manifest["interrupted"] is False
    samples = pd.read_csv(path / "samples.csv.gz")
    assert (
        len(samples)
        == demo_run.summary["requests"].sum()
        + (
            samples["t_intended"]
            < samples.groupby(["experiment", "variant"])["t_intended"].transform("min") + 1
        ).sum()
    )
    assert samples["request_id"].str.len().eq(32).all()
    logs = [json.loads(x) for x in (path / "logs.jsonl").read_text().splitlines()]
    logged_ids = {x.get("request_id") for x in logs}
    assert set(samples["request_id"]) <= logged_ids, "every sampled request is in the logs"
    metrics = pd.read_csv(path / "metrics.csv")
    assert "http_requests_total" in set(metrics["metric"])
    pngs = sorted(p.name for p in (path / "plots").glob("*.png"))
    assert "queries-percentiles.png" in pngs and "caching-cache-hits.png" in pngs
    html = (path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(pngs)
