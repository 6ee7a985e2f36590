"""The run folder as an object: written by `Run`, read back by `Run.load`, equal both ways.

Synthetic samples, no load: these run in `make test-fast`.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from synthetic import PROFILE, write_run

from perflab import experiments, paths, plots, report, results, stats
from perflab.cli import main
from perflab.errors import LabError
from perflab.results import Run
from perflab.runner import save


def test_save_then_load_gives_the_same_run() -> None:
    run = write_run(none=10.0, memory=2.0)
    for name in (
        "summary.csv",
        "comparison.csv",
        "samples.csv.gz",
        "metrics.csv",
        "logs.jsonl",
        "manifest.json",
    ):
        assert (run.path / name).is_file(), name
    back = Run.load(run.path)
    assert back.path == run.path
    assert back.manifest == json.loads(json.dumps(run.manifest, default=str))
    pd.testing.assert_frame_equal(back.summary, run.summary, atol=1e-4, check_dtype=False)
    pd.testing.assert_frame_equal(back.comparison, run.comparison, atol=1e-4, check_dtype=False)
    cols = ["t_intended", "latency_ms", "ok", "endpoint", "request_id", "variant", "repeat"]
    pd.testing.assert_frame_equal(back.samples[cols], run.samples[cols], check_dtype=False)
    assert len(back.logs) == len(run.logs) == 12
    assert set(back.logs["variant"]) == {"none", "memory"} and set(back.logs["repeat"]) == {0, 1}
    assert len(back.metrics) == 4 and set(back.metrics["variant"]) == {"none", "memory"}
    # by run id and as "latest" too
    assert Run.load(run.path.name).path == run.path
    assert Run.load("latest").path == run.path


def test_the_writer_tags_rows_and_records_the_manifest() -> None:
    run = write_run(none=10.0, memory=2.0)
    entry = run.manifest["experiments"]["caching"]
    assert entry["baseline"] == "none" and entry["profile"]["warmup"] == 1.0
    assert entry["variants"]["memory"]["settings"]["cache"] == "memory"
    assert entry["variants"]["memory"]["env"] == {"CATALOG_CACHE": "memory"}  # no URLs
    assert run.manifest["repeat"] == 2 and run.manifest["interrupted"] is False
    for key in ("run_id", "started_at", "ended_at", "git_commit", "packages", "cpu_count"):
        assert key in run.manifest, key
    assert list(run.samples.columns[-4:]) == results.TAG_COLUMNS
    # the summary is the contract, warm-up dropped per repetition (50 req/s x 1 s, twice)
    assert list(run.summary.columns[: len(results.SUMMARY_COLUMNS)]) == results.SUMMARY_COLUMNS
    assert set(run.summary["requests"]) == {2 * (500 - 50)}
    row = run.comparison.set_index("statistic").loc["p50"]
    assert row["variant"] == "memory" and row["verdict"] == "faster"
    assert list(run.comparison.columns) == results.COMPARISON_COLUMNS
    assert list(run.table().columns) == [c for c in results.TABLE_COLUMNS if c in run.summary]


def test_a_run_that_only_warmed_up_is_saved_and_reported_as_empty(capsys) -> None:
    run = write_run("only-warmup", warmup=60.0, none=10.0)  # every sample is warm-up
    assert run.empty and len(run.samples) == 1000
    assert list(run.summary.columns[: len(results.SUMMARY_COLUMNS)]) == results.SUMMARY_COLUMNS
    assert plots.figures(run) == {}  # no KeyError on an empty summary
    report.publish(run)
    assert "nothing to summarize" in (run.path / "report.html").read_text()
    assert main(["report", str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "before any request passed the warm-up" in out and "1000 recorded" in out
    assert "Empty DataFrame" not in out


def test_an_interrupted_run_with_no_sample_is_saved_as_empty(capsys) -> None:
    exp = experiments.get("queries")
    run = Run.start("nothing")
    run.add_experiment(exp, PROFILE)
    save(run, interrupted=True)
    back = Run.load(run.path)
    assert back.empty and back.interrupted and back.samples.empty
    assert "interrupted before any request was recorded" in back.describe_empty()
    assert "nothing to summarize" in back._repr_html_()
    assert main(["report", str(run.path)]) == 0
    assert "Empty DataFrame" not in capsys.readouterr().out


def test_load_refuses_what_is_not_a_run(tmp_path) -> None:
    with pytest.raises(LabError, match="not a run folder"):
        Run.load(tmp_path)
    with pytest.raises(LabError, match="not a run folder"):
        Run.load("no-such-run-id")
    unfinished = Run.start("unfinished")  # started, never finished: not "latest"
    assert results.latest() != unfinished.path


def test_a_results_folder_that_cannot_be_made_is_one_line_exit_2(
    tmp_path, monkeypatch, capsys
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(paths, "RESULTS", blocker / "results")
    with pytest.raises(LabError, match=r"cannot write a run folder in .*Not a directory"):
        Run.start("x")
    # the CLI: before any dataset, service or load is started
    assert main(["run", "caching", "--size", "tiny", "--duration", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Not a directory" in err and "PERFLAB_RESULTS_DIR" in err


def test_compare_gate_on_saved_runs(capsys) -> None:
    """`perflab compare --fail-if-slower` on runs with known latencies."""
    base = write_run("base", none=10.0)
    same = write_run("same", none=10.0)
    slower = write_run("slower", none=14.0)
    assert main(["compare", str(base.path), str(same.path), "--fail-if-slower", "10%"]) == 0
    assert "PASS" in capsys.readouterr().out
    code = main(
        [
            "compare",
            str(base.path),
            str(slower.path),
            "--fail-if-slower",
            "10%",
            "--statistics",
            "p50,p99,rps",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    fails = [ln for ln in out.splitlines() if ln.startswith("FAIL")]
    assert [ln.split(": ")[2].split()[0] for ln in fails] == ["p50", "p99"], out  # not rps
    assert "caching/none/GET /x: p50 +40.0% (95% CI +" in fails[0]
    # 40% slower is not slower by more than 50%
    assert main(["compare", base.path.name, slower.path.name, "--fail-if-slower", "50%"]) == 0
    # without a margin: just the table
    assert main(["compare", str(base.path), str(slower.path)]) == 0
    table = capsys.readouterr().out
    assert "slower" in table and "FAIL" not in table


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fail-if-slower", "ten"], "not a margin like 10%"),
        (["--fail-if-slower", "150%"], "from 0% to 99%"),
        (["--statistics", "p50,mean"], "not a statistic: mean"),
    ],
)
def test_compare_options_are_checked(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compare", "latest", "latest", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_summary_columns_are_defined_once() -> None:
    """The contract users open in pandas: the stable names, from one list."""
    assert results.SUMMARY_COLUMNS[:9] == [
        "experiment",
        "variant",
        "endpoint",
        "requests",
        "failures",
        "error_rate",
        "rps",
        "rps_sd",
        "p50_ms",
    ]
    assert {"p95_ms", "p99_ms", "max_ms", "p50_ci_low", "p99_ci_high"} <= set(
        results.SUMMARY_COLUMNS
    )
    assert results.SUMMARY_COLUMNS[3:] == stats.STAT_COLUMNS
    assert np.isin(results.TABLE_COLUMNS[:9], results.SUMMARY_COLUMNS).all()
