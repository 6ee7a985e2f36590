"""A real Prometheus scrapes the services of a run (skipped, saying why, without one on PATH)."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from perflab import experiments, prometheus
from perflab.errors import LabError
from perflab.lab import Lab
from perflab.loadgen import LoadProfile
from perflab.runner import run_experiments

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        prometheus.binary() is None,
        reason=prometheus.HOW_TO_GET + " (make test runs .ci/install-prometheus)",
    ),
]


def test_a_run_saves_promql_results_for_every_service(database_url: str, tmp_root) -> None:
    exp = experiments.get("caching").with_variants(["none", "memory"])
    # Through the gateway: two services per variant, both scraped.
    exp.service = "gateway"
    # Long enough for several 1 s scrapes per variant; the runner also waits for one scrape of
    # each service before the load and one after it (a starved machine delays scrapes).
    prof = LoadProfile(model="closed", users=2, duration=6, warmup=0.5)
    with Lab(size="tiny", database_url=database_url, log_dir=tmp_root / "logs") as lab:
        run = run_experiments([exp], lab=lab, profile=prof, progress=False, echo=False)
    assert run.manifest["prometheus"] == {"data": "prometheus/data", "queries": "promql.csv"}
    assert (run.path / "prometheus" / "data").is_dir()
    promql = pd.read_csv(run.path / "promql.csv")
    up = promql[(promql["query"] == "up") & (promql["value"] == 1)]
    services = set(zip(up["variant"], up["service"], strict=True))
    for v in ("none", "memory"):
        label = f"caching-{v}-r0"
        assert {(v, label), (v, f"{label}-catalog")} <= services, services
    rps = promql[promql["query"] == "rps"]
    assert (rps.groupby("variant")["value"].max() > 0).all()
    p95 = promql[(promql["query"] == "p95_seconds") & promql["value"].notna()]
    assert set(p95["variant"]) == {"none", "memory"}
    assert set(p95["app"]) == {"gateway", "catalog"}
    # The histogram's p95 lies on the bucket grid's scale of the exact one (same magnitude).
    assert (p95["value"] > 0).all()


def test_prometheus_follows_services_as_they_come_and_go(start_catalog, tmp_path) -> None:
    svc = start_catalog("prom-target", queries="optimized", cache="none")
    with prometheus.Prometheus(tmp_path / "prom") as prom:
        prom.add(svc.url, service="one", experiment="x", variant="y")
        deadline = time.monotonic() + 60
        got = pd.DataFrame()
        while time.monotonic() < deadline:
            got = prom.query('http_requests_total{service="one"}')
            if not got.empty:
                break
            time.sleep(0.5)
        assert not got.empty, "no http_requests_total scraped from the service"
        # A scrape that began after this moment, finished and healthy, is waited for.
        assert prom.wait_scraped([svc.url], after=time.time(), timeout=60)
        assert not prom.wait_scraped(["http://127.0.0.1:9/"], after=time.time(), timeout=1)
        assert set(got["variant"]) == {"y"}
        with pytest.raises(LabError, match="PromQL"):
            prom.query("sum(")
        prom.remove(svc.url)
        assert prom.targets_file.read_text().strip() == "[]"
    assert prom.proc is None


@pytest.mark.parametrize(
    ("text", "unix"),
    [
        ("2026-11-29T21:40:44.123456789Z", 1795988444.123456789),
        ("2026-11-29T22:40:44+01:00", 1795988444.0),
        ("2026-11-29T21:40:44.5-00:00", 1795988444.5),
    ],
)
def test_prometheus_times_are_read_to_the_nanosecond_fraction(text: str, unix: float) -> None:
    assert prometheus._unix(text) == pytest.approx(unix, abs=1e-6)
