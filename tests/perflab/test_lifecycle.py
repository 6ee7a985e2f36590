"""Nothing the lab starts outlives it: not after SIGKILL, not after Ctrl-C (which keeps data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from harness_helpers import ROOT, descendants, interrupt_run, processes_of, wait_gone

pytestmark = pytest.mark.slow  # real load against real processes

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from perflab.lab import Lab
    from perflab.loadgen import Endpoint, LoadProfile, run_load

    out = Path(sys.argv[2])
    ticks = []

    def ready():
        ticks.append(1)
        if len(ticks) == 3:
            print("READY", flush=True)

    lab = Lab(size="tiny", database_url=sys.argv[1], log_dir=out / "logs")
    svc = lab.service("catalog", workers=2, cache="redis")
    run_load(svc.url, [Endpoint("GET /products", "/products?limit=5")],
             LoadProfile(users=2, duration=60, warmup=1), out, progress=False, on_tick=ready)
    """
)


def test_sigkill_of_the_lab_leaves_no_child_or_grandchild(database_url, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # embedded redis-server
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, database_url, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "READY", line + proc.stdout.read()
        tree = descendants(proc.pid)
        tagged = processes_of(proc.pid)
        names = sorted(Path(f"/proc/{p}/comm").read_text().strip() for p in tree)
        print(f"\nlab {proc.pid} started {len(tree)} processes: {names}")
        # uvicorn (supervisor + 2 workers), redis-server, locust: all tagged with the lab's pid,
        # except redis-server, whose process-title code overwrites its environ in /proc
        untagged = [Path(f"/proc/{p}/comm").read_text().strip() for p in set(tree) - set(tagged)]
        assert len(tree) >= 5 and untagged in ([], ["redis-server"]), untagged
        assert any("redis" in n for n in names)
    finally:
        proc.kill()
        proc.wait()
    left = wait_gone(sorted(set(tree) | set(tagged)), 5.0)
    assert left == [], f"still running 5 s after SIGKILL: {left}"
    assert processes_of(proc.pid) == []


def test_sigint_mid_run_keeps_samples_and_stops_everything(database_url, tmp_path) -> None:
    args = ["caching", "--variants", "none,memory", "--size", "tiny", "--users", "2"]
    r = interrupt_run([*args, "--duration", "30", "--warmup", "0.5"], database_url, tmp_path, 20)
    assert r.returncode == 130, r.err
    manifest = json.loads((r.run_dir / "manifest.json").read_text())
    assert manifest["interrupted"] is True
    samples = pd.read_csv(r.run_dir / "samples.csv.gz")
    assert len(samples) > 20 and set(samples["variant"]) == {"none"}
    assert (r.run_dir / "summary.csv").exists() and (r.run_dir / "report.html").exists()
    assert "interrupted" in r.out
    assert wait_gone(r.tree, 5.0) == []
    assert processes_of(r.pid) == []
