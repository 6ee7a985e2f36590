"""The open model: arrival schedules, and the rate split across distributed Locust workers."""

from __future__ import annotations

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
