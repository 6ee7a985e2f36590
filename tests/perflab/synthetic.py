"""Synthetic samples with known latencies and timing: the statistics tested without a load."""

from __future__ import annotations

import numpy as np
import pandas as pd

from perflab.recorder import COLUMNS


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
