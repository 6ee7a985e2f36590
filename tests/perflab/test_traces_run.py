"""A run's `spans.jsonl` joins its `samples.csv.gz` on request id: every request is traced."""

from __future__ import annotations

import pytest

from perflab import experiments, report, traces
from perflab.lab import Lab
from perflab.loadgen import LoadProfile
from perflab.runner import Run, run_experiments

pytestmark = pytest.mark.slow  # real load against real processes


@pytest.fixture(scope="module")
def run(database_url: str, tmp_root) -> Run:
    exps = [
        experiments.get("queries"),
        experiments.get("caching").with_variants(["none", "memory"]),
    ]
    prof = LoadProfile(model="closed", users=2, duration=3, warmup=0.5)
    with Lab(size="tiny", database_url=database_url, log_dir=tmp_root / "logs") as lab:
        return run_experiments(exps, lab=lab, profile=prof, progress=False, echo=False)


def test_spans_join_every_sample(run: Run) -> None:
    spans = traces.read_spans(Run.load(run.path))
    assert set(spans["experiment"]) == {"queries", "caching"}
    joined = traces.join_spans(run.samples, spans)
    ok = run.samples[run.samples["ok"]]
    assert len(ok) > 50
    missing = set(ok["request_id"].str.lower()) - set(joined["request_id"])
    assert not missing, f"{len(missing)} of {len(ok)} requests have no trace"
    # The N+1 in the spans: one SQL span per row naive, at most 3 optimized.
    q = joined[joined["experiment"] == "queries"].groupby("variant")["db_spans"].median()
    assert q["naive"] > 20 >= 3 >= q["optimized"] > 0
    # The split adds up, with no negative network time.
    split = traces.typical_split(joined, ("experiment", "variant"))
    parts = split[["client_wait_ms", "network_ms", "app_ms", "db_ms", "cache_ms"]].sum(axis=1)
    assert (parts - split["latency_ms"]).abs().max() < 1e-6
    assert (split["network_ms"] > 0).all(), split.to_string()


def test_report_shows_split_and_slowest_traces(run: Run) -> None:
    page = report.write(Run.load(run.path), run.path / "again.html").read_text()
    assert "joined to their spans (spans.jsonl)" in page
    assert "slowest traced requests" in page


def test_waterfall_draws_a_trace(run: Run) -> None:
    import matplotlib.pyplot as plt

    spans = traces.read_spans(run)
    joined = traces.join_spans(run.samples, spans)
    slow = traces.slowest(joined[joined["variant"] == "naive"], 1)
    rid = slow["request_id"].iloc[0]
    one = traces.trace(spans, rid)
    assert one["depth"].iloc[0] == 0 and (one["depth"].iloc[1:] == 1).all()
    ax = traces.waterfall(spans, rid)
    assert len(ax.patches) == min(len(one), 60) and ax.get_xlabel()
    plt.close(ax.figure)
