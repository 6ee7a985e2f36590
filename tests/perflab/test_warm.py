"""Warm experiments (`Experiment.warm`, `runner.warm_up`): the traffic over the N most popular
products, each read once before each variant's load; the demo's caching experiment runs so."""

from __future__ import annotations

import httpx
import pytest

from perflab import experiments
from perflab.errors import LabError
from perflab.lab import Lab
from perflab.loadgen import Endpoint, LoadProfile
from perflab.runner import run_experiments, warm_up

DETAIL = Endpoint("GET /products/{id}", "/products/{product}")


def test_warmed_is_a_copy_and_needs_a_product() -> None:
    exp = experiments.get("caching")
    warm = exp.warmed(300)
    assert (warm.warm, exp.warm) == (300, 0)
    with pytest.raises(LabError, match="at least one product"):
        exp.warmed(0)


def test_the_demo_runs_caching_warm_and_queries_as_it_is() -> None:
    demo = {e.name: e for e in experiments.demo()}
    assert list(demo) == experiments.DEMO
    assert demo["caching"].warm == experiments.DEMO_WARM["caching"] > 0
    assert demo["queries"].warm == 0


@pytest.mark.slow
def test_warm_up_reads_each_product_once_and_leaves_them_cached(start_catalog) -> None:
    svc = start_catalog("warm-up", cache="memory")
    other = Endpoint("list", "/products?category={category}")  # names no product: not read
    assert warm_up(svc.url, [DETAIL, other], 25) == 25
    assert httpx.get(f"{svc.url}/products/25").headers["x-cache"] == "hit"
    assert httpx.get(f"{svc.url}/products/26").headers["x-cache"] == "miss"
    assert warm_up(svc.url, [other], 25) == 0


@pytest.mark.slow
def test_warm_up_refuses_a_service_that_fails_its_warm_set(start_catalog) -> None:
    svc = start_catalog("warm-up-refused", cache="memory")
    # A path that only takes POST: every read answers 405.
    reviews = Endpoint("reviews", "/products/{product}/reviews")
    with pytest.raises(LabError, match=r"warming up: .*/products/1/reviews answered 405"):
        warm_up(svc.url, [reviews], 3)


@pytest.mark.slow
def test_a_warm_run_measures_only_hits_and_records_its_warm_set(database_url, tmp_root) -> None:
    exp = experiments.get("caching").with_variants(["none", "memory"]).warmed(40)
    # No warm-up seconds: every request is recorded, the first one included.
    prof = LoadProfile(model="closed", users=2, duration=3, warmup=0)
    with Lab(size="tiny", database_url=database_url, log_dir=tmp_root / "logs") as lab:
        run = run_experiments([exp], lab=lab, profile=prof, progress=False, echo=False)
    assert run.manifest["experiments"]["caching"]["warm"] == 40
    memory = run.samples[run.samples["variant"] == "memory"]
    assert len(memory) > 50
    assert (memory["x_cache"] == "hit").all()  # warm from its first recorded request
    # Its log holds the 40 warm-up reads besides the recorded ones, every id among 1..40.
    logs = run.logs[run.logs["variant"] == "memory"]
    ids = logs["path"].str.extract(r"^/products/(\d+)$")[0].dropna().astype(int)
    assert set(ids) == set(range(1, 41))
