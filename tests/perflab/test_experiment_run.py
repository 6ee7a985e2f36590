"""A real (tiny, short) experiment run: samples joined to server logs, plots with units."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from perflab import analysis, experiments, plots
from perflab.lab import Lab
from perflab.loadgen import LoadProfile
from perflab.runner import Run, run_experiments

pytestmark = pytest.mark.slow  # real load against real processes


@pytest.fixture(scope="module")
def run(database_url: str, tmp_root) -> Run:
    exp = experiments.get("caching").with_variants(["none", "memory"])
    prof = LoadProfile(model="closed", users=2, duration=3, warmup=0.5)
    with Lab(size="tiny", database_url=database_url, log_dir=tmp_root / "logs") as lab:
        return run_experiments([exp], lab=lab, profile=prof, progress=False, echo=False)


def test_samples_join_server_logs_on_request_id(run: Run) -> None:
    joined = analysis.join_requests(run.samples, run.logs)
    assert len(joined) >= 0.95 * len(run.samples) > 50
    assert (joined["server_status"] == joined["status"]).all()
    split = analysis.time_split(joined).set_index("variant")
    print("\n", split.round(3).to_string())
    # the server's own time is inside the client's: the network part is positive and small
    assert (split["network_ms"] > 0).all()
    assert (split["network_ms"] < split["latency_ms"]).all()
    assert (split["client_wait_ms"].abs() < 1e-6).all()  # closed model: sent when meant to
    none, memory = split.loc["none"], split.loc["memory"]
    assert none["db_ms"] > 0 and none["cache_ms"] == 0
    # the same join from the saved run folder
    again = analysis.join_run(run.path)
    assert len(again) == len(joined)
    assert (again["duration_ms"] > 0).all() and memory["latency_ms"] > 0


def test_plots_are_saved_with_labelled_axes(run: Run) -> None:
    figs = plots.figures(run)
    for kind in ("percentiles", "cdf", "timeline", "errors", "metrics", "cache-hits"):
        assert f"caching-{kind}" in figs, sorted(figs)
    for name, fig in figs.items():
        axes = fig.get_axes()
        assert axes[-1].get_xlabel(), f"{name}: no x label"
        for ax in axes:
            assert ax.get_ylabel(), f"{name}: no y label"
            assert ax.has_data(), f"{name}: empty axes"
        plt.close(fig)
    saved = {p.stem for p in (run.path / "plots").glob("*.png")}
    assert {"caching-errors", "caching-metrics"} <= saved
    m = run.metrics
    assert {"http_requests_total", "process_resident_memory_bytes"} <= set(m["metric"])


def test_report_shows_where_the_time_went(run: Run, capsys) -> None:
    from perflab.cli import main

    (run.path / "report.html").unlink()
    assert main(["report", str(run.path)]) == 0
    html = (run.path / "report.html").read_text()
    assert "Where the time went" in html and "network_ms" in html
    assert html.count("data:image/png;base64") >= 6
    out = capsys.readouterr().out
    assert "none" in out and "memory" in out
