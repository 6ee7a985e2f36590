"""`make bench` in miniature: `python -m bench --quick` runs every item and writes its files.

The numbers of a quick run on a busy machine mean little, so this checks the contract (one or
more lines per item, each with a value, a bar and a verdict; no item that could not be measured)
and the one piece of arithmetic the coordinated-omission item relies on.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `bench/` is run from the checkout (python -m bench), not installed
    sys.path.insert(0, str(ROOT))

from bench.items import ITEMS  # noqa: E402
from bench.report import VERDICTS  # noqa: E402
from perflab.targets import stall_percentile  # noqa: E402


def test_stall_truth_is_the_analytic_quantile() -> None:
    # Frozen 1 s every 10 s: 10% of arrivals wait, uniformly between 0 and 1 s.
    assert stall_percentile(0.99, 0.0, 10, 1) == pytest.approx(900)
    assert stall_percentile(0.95, 0.0, 10, 1) == pytest.approx(500)
    assert stall_percentile(0.50, 0.0, 10, 1) == 0
    assert stall_percentile(0.99, 0.0, 2, 0.2) == pytest.approx(180)
    assert stall_percentile(0.99, 2.0, 3, 1) == pytest.approx(2 + 970)  # plus the base latency


@pytest.mark.slow
def test_quick_bench_writes_one_line_per_item(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=360,  # every item in miniature; generous for a shared, busy machine
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    csvs, mds = list(out.glob("*.csv")), list(out.glob("*.md"))
    assert len(csvs) == 1 and len(mds) == 1, list(out.iterdir())
    assert csvs[0].stem == mds[0].stem  # <date>.csv and <date>.md

    rows = list(csv.DictReader(csvs[0].open()))
    numbers = {int(r["item"]) for r in rows}
    assert {n for n, _, _ in ITEMS} <= numbers, numbers
    for r in rows:
        assert r["verdict"] in VERDICTS, r
        assert r["verdict"] != "error", r
        assert r["bar"].strip(), r
        if r["verdict"] != "skipped":
            assert r["value"] != "" and float(r["value"]) == float(r["value"]), r
        if r["verdict"] in ("pass", "falls short"):
            assert r["bar"][0] in "≤≥w", r  # a real bar, not "reported"

    text = mds[0].read_text()
    assert "| # | Topic | Measure | Value | Bar | Verdict | Detail |" in text
    assert "Python " in text and "commit " in text and "machine: " in text
    for _, topic, _ in ITEMS:
        assert f"| {topic} |" in text
