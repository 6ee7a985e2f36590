"""`perflab run frameworks` completes with all four frameworks under the same load, and prints
and saves throughput and latency percentiles with confidence intervals against the baseline."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from harness_helpers import perflab_cli, saved_run

from perflab import experiments

pytestmark = pytest.mark.slow  # real load against real processes

FRAMEWORKS = ["flask", "django", "fastapi-def", "fastapi-async"]


def test_the_experiment_compares_the_four_frameworks_under_the_same_load():
    exp = experiments.get("frameworks")
    assert [v.name for v in exp.variants] == FRAMEWORKS
    assert [exp.service_for(v) for v in exp.variants] == FRAMEWORKS
    assert len({(v.service, repr(v.settings)) for v in exp.variants}) == 4  # one app each
    assert len(exp.mix) == 1  # same load: one endpoint, one profile for every variant


def test_a_quick_run_completes_with_all_four(database_url, tmp_root):
    args = ["run", "frameworks", "--quick", "--size", "tiny", "--duration", "4", "--warmup", "1"]
    out = perflab_cli(*args, env={"DATABASE_URL": database_url}, timeout=280)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    run_dir = saved_run(out.stdout)
    summary = pd.read_csv(run_dir / "summary.csv").set_index("variant")
    assert sorted(summary.index) == sorted(FRAMEWORKS)
    assert (summary["requests"] > 0).all() and (summary["failures"] == 0).all()
    assert (summary["rps"] > 0).all()
    assert (summary["p50_ms"] <= summary["p99_ms"]).all()
    comparison = pd.read_csv(run_dir / "comparison.csv")
    assert set(comparison["variant"]) == set(FRAMEWORKS[1:])
    assert set(comparison["baseline"]) == {"flask"}
    assert (comparison["ci_low"] <= comparison["ratio"]).all()
    assert (comparison["ratio"] <= comparison["ci_high"]).all()
    for name in FRAMEWORKS:
        assert name in out.stdout
    manifest = json.loads((run_dir / "manifest.json").read_text())
    variants = manifest["experiments"]["frameworks"]["variants"]
    # each variant was served by its own app (the lab names the service in its environment)
    for name in FRAMEWORKS:
        env_name = f"{name.upper().replace('-', '_')}_SERVICE_NAME"
        assert variants[name]["env"][env_name] == name
