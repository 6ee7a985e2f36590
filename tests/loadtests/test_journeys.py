"""Your own locustfile still gives raw samples: the journey locustfile under `perflab load`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def test_journey_locustfile_records_every_step(start_catalog, tmp_path):
    svc = start_catalog("t-journeys", queries="optimized", cache="memory")
    env = {**os.environ, "PERFLAB_RESULTS_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "perflab.cli", "load", "--host", svc.url,
         "--locustfile", str(ROOT / "loadtests" / "journeys.py"),
         "--users", "4", "--duration", "4", "--warmup", "0"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = tmp_path.iterdir()
    samples = pd.read_csv(run_dir / "samples.csv.gz")
    assert {"GET /products", "GET /products/{id}"} <= set(samples["endpoint"])
    detail = samples[samples["endpoint"] == "GET /products/{id}"]
    assert detail["x_cache"].isin(["hit", "miss"]).all()
    reads = samples[samples["endpoint"].str.startswith("GET")]
    assert reads["ok"].all()
