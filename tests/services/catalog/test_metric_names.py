"""Metric fixes: one label scheme for cache results, and a fault gauge that forgets dead workers."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from perflab.services import ServiceHandle


def test_fault_gauge_is_one_series_per_fault_across_workers(start_catalog) -> None:
    """With two workers (multiprocess mode) `fault_active` is one series per fault ("livemax"
    over the live workers), not one per worker pid that outlives its worker."""
    svc = start_catalog("metric-workers", workers=2, queries="optimized", cache="none")
    text = httpx.get(f"{svc.url}/metrics", timeout=10).text
    faults = [
        s.labels
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "fault_active"
    ]
    assert faults and all(set(lab) == {"fault"} for lab in faults), faults
    assert len({lab["fault"] for lab in faults}) == len(faults)


def test_cache_results_use_the_cache_name_as_label(memory: ServiceHandle) -> None:
    for _ in range(2):
        assert httpx.get(f"{memory.url}/products/5", timeout=10).status_code == 200
    text = httpx.get(f"{memory.url}/metrics", timeout=10).text
    labels = [
        s.labels
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "cache_requests_total"
    ]
    assert {lab["cache"] for lab in labels} == {"memory"}, labels
    assert {"hit", "miss"} <= {lab["result"] for lab in labels}
