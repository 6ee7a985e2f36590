"""The Grafana dashboard is importable JSON and asks only for metrics the services expose."""

from __future__ import annotations

import json
import re
from pathlib import Path

from perflab_services.catalog.core.faults import Faults
from perflab_services.common.metrics import ServiceMetrics
from perflab_services.gateway.core.metrics import UpstreamMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "perflab-dashboard.json"


def exposed_names() -> set[str]:
    """Every sample name the services' registries expose (plus the rate limiter's counter)."""
    metrics = ServiceMetrics("test")
    UpstreamMetrics(metrics)
    Faults.create(metrics.registry)
    names = {"rate_limited_total"}
    for family in metrics.registry.collect():
        names.update(s.name for s in family.samples)
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}_{x}" for x in ("bucket", "sum", "count"))
    return names


def test_dashboard_is_importable_and_uses_real_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["panels"] and dash["__inputs"][0]["type"] == "datasource"
    known = exposed_names()
    for panel in dash["panels"]:
        assert panel["title"] and panel["targets"], panel
        for target in panel["targets"]:
            used = set(re.findall(r"\b([a-z_]+)\{", target["expr"]))
            assert used and used <= known, (panel["title"], used - known)
    docs = (ROOT / "docs" / "metrics.md").read_text()
    for name in ("http_requests_total", "cache_requests_total", "fault_active", "spans.jsonl"):
        assert name in docs
