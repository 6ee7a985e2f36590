"""Synthetic samples with known latencies and timing, and runs made of them: the statistics and
the run folder tested without a load."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perflab import experiments
from perflab.loadgen import LoadProfile
from perflab.recorder import COLUMNS
from perflab.results import Run


def samples(
    latencies_ms: np.ndarray | list[float],
    *,
    rate: float = 100.0,
    t0: float = 1_000_000.0,
    ok: np.ndarray | list[bool] | None = None,
    endpoint: str = "GET /x",
    **tags: object,
) -> pd.DataFrame:
    """One load's samples as the recorder writes them: requests meant to start every 1/rate s
    from `t0`, sent on time, each taking its latency. `tags` (variant=..., repeat=...) become
    columns."""
    lat = np.asarray(latencies_ms, dtype=float)
    n = len(lat)
    t = t0 + np.arange(n) / rate
    known = {
        "t_intended": t,
        "t_start": t,
        "latency_ms": lat,
        "service_ms": lat,
        "status": 200,
        "ok": np.ones(n, dtype=bool) if ok is None else np.asarray(ok, dtype=bool),
        "endpoint": endpoint,
        "x_cache": "",
        "x_db_queries": "",
        "request_id": [f"{i:032x}" for i in range(n)],
        "worker": "1",
    }
    # The recorder's columns, in its order; one this file does not know yet is 0.
    frame = pd.DataFrame({c: known.get(c, 0.0) for c in COLUMNS}, index=range(n))
    return frame.assign(**tags)


def lognormal(n: int, median_ms: float, seed: int, sigma: float = 0.3) -> np.ndarray:
    """Latencies with a known median and a right tail, like a real service's."""
    return median_ms * np.random.default_rng(seed).lognormal(0.0, sigma, n)


PROFILE = LoadProfile(model="closed", users=2, duration=10, warmup=1.0)


def write_run(name: str = "roundtrip", warmup: float = 1.0, **medians: float) -> Run:
    """A finished caching run of the variants named, each with the median latency given (ms),
    2 repetitions of 500 requests at 50/s; written through `Run` into the results folder."""
    exp = experiments.get("caching").with_variants(list(medians))
    run = Run.start(name, repeat=2, quick=True)
    run.add_experiment(exp, LoadProfile(**{**PROFILE.__dict__, "warmup": warmup}))
    for rep in range(2):
        for i, (variant, ms) in enumerate(medians.items()):
            s = samples(lognormal(500, ms, seed=10 * rep + i), rate=50, t0=1e6 + 100 * rep)
            s["x_cache"] = "hit" if variant != "none" else ""
            metrics = [{"t": 1e6, "metric": "http_requests_total", "labels": "{}", "value": 5.0}]
            logs = [
                {"event": "request", "request_id": rid, "duration_ms": 1.5, "db_queries": 1}
                for rid in s["request_id"][:3]
            ]
            run.add_variant(
                "caching",
                variant,
                s,
                settings=exp.variant(variant).settings,
                repeat=rep,
                env={"CATALOG_CACHE": variant, "CATALOG_REDIS_URL": "redis://secret"},
                metrics=metrics,
                logs=logs,
            )
    return run.finish()
