"""Notebook helpers against a real service and real frames."""

from __future__ import annotations

import httpx
import pandas as pd
import pytest

from perflab.classroom import lessons


def test_diagnostics_and_probe(start_catalog, login):
    svc = start_catalog("t-lessons")
    d = lessons.diagnostics(httpx.get(svc.url + "/products?limit=2", trust_env=False))
    assert d["status"] == 200 and int(d["x-db-queries"]) >= 1 and d["x-request-id"]
    hostile = [("GET", "/products?limit=100000", None), ("POST", "/products/1/reviews", {"x": 1})]
    anonymous = lessons.probe(svc.url, hostile)
    assert anonymous["status"].tolist() == [422, 401]  # a write needs a token first
    editor = lessons.probe(svc.url, hostile, headers=login(svc, "editor"))
    assert editor["status"].tolist() == [422, 422]
    for table in (anonymous, editor):
        assert table["json"].all() and not table["traceback_leaked"].any()


def test_counter_rate_and_timeline():
    metrics = pd.DataFrame(
        {
            "t": [0.0, 0.0, 1.0, 1.0, 2.0, 2.0],
            "metric": ["http_requests_total"] * 6,
            "labels": ["a", "b"] * 3,
            "value": [0, 0, 10, 5, 30, 15],
            "variant": ["v"] * 6,
        }
    )
    rate = lessons.counter_rate(metrics, "http_requests_total")
    assert rate["rate"].tolist() == [15.0, 30.0]
    fig = lessons.metric_timeline(metrics, "http_requests_total", "req/s")
    assert fig.axes[0].get_ylabel() == "req/s"


def test_perf_gate():
    comparison = pd.DataFrame(
        {
            "experiment": ["q", "q", "q"],
            "baseline": ["a", "a", "a"],
            "variant": ["b", "c", "d"],
            "statistic": ["p95", "p95", "p95"],
            "ratio": [2.0, 0.5, 0.95],
            "ci_low": [1.8, 0.4, 0.9],
            "ci_high": [2.2, 0.6, 0.98],
            "verdict": ["faster", "slower", "slower"],
        }
    )
    assert lessons.perf_gate(comparison)["passes"].tolist() == [True, False, False]
    # d is slower, but by less than 10%: within the margin
    assert lessons.perf_gate(comparison, margin=0.1)["passes"].tolist() == [True, False, True]


@pytest.mark.slow  # a Lab with a catalog and Redis
def test_setup_checks(tmp_path):
    from perflab.lab import Lab

    with Lab(size="tiny", database_url=f"sqlite:///{tmp_path / 'c.sqlite3'}") as lab:
        table = lessons.setup_checks(lab)
    assert table.set_index("check").loc["catalog answers /healthz", "ok"], table
    assert table["ok"].sum() >= len(table) - 1
