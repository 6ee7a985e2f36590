"""The harness against servers whose latency we know: does it report the truth?"""

from __future__ import annotations

import http.client
from pathlib import Path

import numpy as np
import pytest

from perflab import stats
from perflab.loadgen import Endpoint, LoadProfile, run_load
from perflab.targets import stall_percentile

pytestmark = pytest.mark.slow  # real load against real processes

MIX = [Endpoint("GET /", "/")]


def sequential_p50(port: int, n: int = 60) -> float:
    """What a plain sequential keep-alive http.client measures: the reference truth."""
    import time

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", "/")
        conn.getresponse().read()
        lat.append((time.perf_counter() - t) * 1000)
    conn.close()
    return float(np.median(lat[5:]))


def test_p50_against_20ms_server_is_within_5_percent(target, tmp_path: Path) -> None:
    t = target("sleep", 20)
    before = sequential_p50(t.port)
    # one user, like the sequential reference: the same concurrency at the server
    prof = LoadProfile(model="closed", users=1, duration=4, warmup=1)
    result = run_load(t.url, MIX, prof, tmp_path, label="fid", progress=False)
    after = sequential_p50(t.port)
    truth = (before + after) / 2
    m = stats.measured(result.samples, prof.warmup)
    p50 = float(np.percentile(m["latency_ms"], 50))
    print(f"\nharness p50 {p50:.2f} ms, http.client p50 {truth:.2f} ms, sleep 20 ms")
    assert len(m) > 80
    assert 20 <= truth < 25
    assert abs(p50 - truth) / truth < 0.05


def test_stall_open_model_shows_the_stall_and_closed_model_hides_it(target, tmp_path) -> None:
    """1 s stall every 3 s: 1/3 of arrivals wait; p95 and p99 are the stall, not the server."""
    every, stall, base = 3.0, 1.0, 2.0
    t = target("stall", base, stall_every=every, stall_s=stall)
    # the analytic truth holds over whole stall cycles: keep 6 s (two cycles) after warm-up
    open_prof = LoadProfile(model="open", rate=50, users=80, duration=8, warmup=1)
    closed_prof = LoadProfile(model="closed", users=2, duration=4, warmup=1)
    got = {}
    for name, prof in (("open", open_prof), ("closed", closed_prof)):
        res = run_load(t.url, MIX, prof, tmp_path, label=name, progress=False)
        m = stats.measured(res.samples, prof.warmup)
        if name == "open":
            assert m["t_intended"].max() - m["t_intended"].min() > 2 * every
            m = m[m["t_intended"] < m["t_intended"].min() + 2 * every]
        lat = m["latency_ms"].to_numpy()
        got[name] = {p: float(np.percentile(lat, p)) for p in (50, 95, 99)}
        got[name]["n"] = len(lat)
        got[name]["stalled"] = float((lat > 100).mean())
    truth = {p: stall_percentile(p / 100, base, every, stall) for p in (50, 95, 99)}
    print(f"\n{'':8}{'p50':>9}{'p95':>9}{'p99':>9}  (ms)")
    for name, row in (("truth", truth), ("open", got["open"]), ("closed", got["closed"])):
        print(f"{name:8}" + "".join(f"{row[p]:9.1f}" for p in (50, 95, 99)))
    print(f"share of requests that saw a stall: open {got['open']['stalled']:.1%}, closed "
          f"{got['closed']['stalled']:.2%}; truth {stall / every * (1 - 0.1):.1%}")  # fmt: skip
    assert got["open"]["n"] > 250
    for p in (95, 99):
        assert abs(got["open"][p] - truth[p]) / truth[p] < 0.15, (p, got["open"][p], truth[p])
    assert 0.25 < got["open"]["stalled"] < 0.36  # 1/3 arrive in a stall; 10% of them wait < 0.1 s
    assert got["open"][50] < 10 * base
    # The closed model: 2 users each send one request into a stall and then wait with it, so
    # only ~2 requests per stall (of hundreds) see it. p95 misses it entirely; p99 too unless
    # the machine is so slow that 2 per stall exceed 1%.
    assert got["closed"]["stalled"] < got["open"]["stalled"] / 10
    assert got["closed"][95] < truth[95] / 5
    assert got["closed"][99] < truth[99]
