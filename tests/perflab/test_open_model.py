"""The open model: arrival schedules, and the rate split across distributed Locust workers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np

from perflab import stats
from perflab.loadgen import Endpoint, LoadProfile, run_load
from perflab.recorder import Schedule


def gaps(schedule: Schedule, n: int) -> np.ndarray:
    return np.diff([schedule.next() for _ in range(n)])


def test_constant_and_poisson_schedules() -> None:
    const = gaps(Schedule(50), 2000)
    assert np.allclose(const, 0.02)
    pois = gaps(Schedule(50, poisson=True, seed=3), 5000)
    assert abs(pois.mean() - 0.02) < 0.002
    assert 0.9 < pois.std() / pois.mean() < 1.1  # exponential gaps: CV = 1
    # two workers at rate/2 on a shared grid, offset by 1/rate, interleave evenly
    w0, w1 = Schedule(25, offset=0.0), Schedule(25, offset=1 / 50)
    merged = np.sort([*[w0.next() for _ in range(100)], *[w1.next() for _ in range(100)]])
    assert np.allclose(np.diff(merged)[2:-2], 0.02, atol=1e-6)


def test_two_workers_split_the_rate_and_merge_samples(target, tmp_path: Path) -> None:
    t = target("sleep", 5)
    prof = LoadProfile(model="open", rate=40, users=10, duration=4, warmup=1.5, workers=2)
    result = run_load(t.url, [Endpoint("GET /", "/")], prof, tmp_path, progress=False)
    # the workers send their samples to the master: one file, every worker's samples in it
    assert [p.name for p in tmp_path.glob("samples-load*.csv")] == ["samples-load.csv"]
    assert {w["worker"] for w in result.workers} == set(result.samples["worker"])
    assert sum(w["samples"] for w in result.workers) == len(result.samples)
    assert not any(w["silent"] for w in result.workers)
    m = stats.measured(result.samples, prof.warmup)
    per_worker = m["worker"].value_counts()
    print(f"\nrequests per worker: {per_worker.to_dict()}")
    assert len(per_worker) == 2
    assert per_worker.min() / per_worker.max() > 0.8  # each worker sends rate/2
    span = m["t_intended"].max() - m["t_intended"].min()
    assert abs(len(m) / span - 40) < 4  # together, the asked rate; not 2x, not 1/2
    g = np.diff(np.sort(m["t_intended"].to_numpy()))
    assert abs(np.median(g) - 0.025) < 0.005  # interleaved, not in bursts of two
    assert m["ok"].all()


def _worker_pids() -> list[int]:
    """Our Locust workers (children of this test process), by pid."""
    me, found = str(os.getpid()), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if stat[stat.rfind(")") + 2 :].split()[1] == me and b"--worker" in cmd:
            found.append(int(pid))
    return found


def test_a_worker_that_dies_mid_run_is_named_and_the_run_keeps_its_samples(
    target, tmp_path: Path
) -> None:
    t = target("sleep", 5)
    prof = LoadProfile(model="open", rate=40, users=10, duration=12, warmup=1, workers=2)
    killed: list[int] = []
    seen = tmp_path / "samples-load.csv"

    def kill_one_worker() -> None:  # once samples arrive, kill a worker we started, by pid
        if not killed and seen.exists() and seen.stat().st_size > 2000:
            pids = _worker_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

    result = run_load(t.url, [Endpoint("GET /", "/")], prof, tmp_path, progress=False,
                      on_tick=kill_one_worker)  # fmt: skip
    assert killed, "no worker was found to kill"
    silent = [w for w in result.workers if w["silent"]]
    print(f"\nworkers: {result.workers}")
    assert len(silent) == 1 and silent[0]["worker"].endswith(f":{killed[0]}")
    assert silent[0]["samples"] > 0  # what it sent before it died is kept
    kept = result.samples[result.samples["worker"] == silent[0]["worker"]]
    assert len(kept) == silent[0]["samples"]
    assert len(result.samples) == sum(w["samples"] for w in result.workers)
