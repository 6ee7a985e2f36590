"""Statistics from raw samples: exact percentiles, bootstrap intervals, pairwise verdicts.

Percentiles come from every recorded latency (not Locust's rounded buckets). Confidence
intervals are percentile bootstraps: resample the requests with replacement, recompute the
statistic, take the 2.5th and 97.5th percentiles of those. For a pair of variants the ratio of
their statistics gets an interval the same way; "faster" or "slower" is said only when the
whole interval is on one side of 1.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

PERCENTILES = (50, 90, 95, 99)
BOOTSTRAP_ROUNDS = 200
MAX_BOOTSTRAP_SAMPLES = 20_000


def measured(samples: pd.DataFrame, warmup: float) -> pd.DataFrame:
    """Drop the warm-up: requests meant to start in the first `warmup` seconds of each load."""
    if samples.empty:
        return samples
    keys = [c for c in ("variant", "repeat") if c in samples.columns]
    if not keys:
        return samples[samples["t_intended"] >= samples["t_intended"].min() + warmup]
    first = samples.groupby(keys)["t_intended"].transform("min")
    return samples[samples["t_intended"] >= first + warmup]


def window_seconds(samples: pd.DataFrame) -> float:
    """Wall time the measured requests span (start of the first to end of the last)."""
    if samples.empty:
        return 0.0
    ends = samples["t_start"] + samples["service_ms"] / 1000
    return float(max(ends.max() - samples["t_intended"].min(), 1e-9))


def bootstrap_ci(
    values: np.ndarray,
    stat: Callable[[np.ndarray], float],
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> tuple[float, float]:
    if len(values) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    if len(values) > MAX_BOOTSTRAP_SAMPLES:
        values = rng.choice(values, MAX_BOOTSTRAP_SAMPLES, replace=False)
    idx = rng.integers(0, len(values), size=(rounds, len(values)))
    stats = np.array([stat(values[row]) for row in idx])
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def summarize(samples: pd.DataFrame, by: list[str], open_model: bool = False) -> pd.DataFrame:
    """One row per group: requests, failures, rps and latency percentiles (ms) with 95% CIs.

    `samples` must already exclude warm-up. rps is each repetition's successful requests over its
    measured window, averaged over repetitions.
    """
    rows = []
    for key, g in samples.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        lat = g["latency_ms"].to_numpy(dtype=float)
        ok = g["ok"].to_numpy(dtype=bool)
        if "repeat" in g.columns:
            rps_each = [int(r["ok"].sum()) / window_seconds(r) for _, r in g.groupby("repeat")]
        else:
            rps_each = [int(ok.sum()) / window_seconds(g)]
        row = dict(zip(by, key, strict=True))
        row.update(
            requests=len(g),
            failures=int((~ok).sum()),
            error_rate=float((~ok).mean()) if len(g) else 0.0,
            rps=float(np.mean(rps_each)),
            rps_sd=float(np.std(rps_each, ddof=1)) if len(rps_each) > 1 else float("nan"),
        )
        for p in PERCENTILES:
            row[f"p{p}_ms"] = float(np.percentile(lat, p)) if len(lat) else float("nan")
        row["max_ms"] = float(lat.max()) if len(lat) else float("nan")
        row["mean_ms"] = float(lat.mean()) if len(lat) else float("nan")
        for p in (50, 95, 99):
            lo, hi = bootstrap_ci(lat, lambda v, p=p: np.percentile(v, p))
            row[f"p{p}_ci_low"], row[f"p{p}_ci_high"] = lo, hi
        if open_model:
            raw = g["service_ms"].to_numpy(dtype=float)
            for p in PERCENTILES:
                row[f"p{p}_ms_uncorrected"] = (
                    float(np.percentile(raw, p)) if len(raw) else float("nan")
                )
        if "x_cache" in g.columns:
            cache = g["x_cache"].fillna("")
            looked = cache.isin(["hit", "miss"])
            row["cache_hit_ratio"] = (
                float((cache == "hit").sum() / looked.sum()) if looked.any() else float("nan")
            )
        if "x_db_queries" in g.columns:
            q = pd.to_numeric(g["x_db_queries"], errors="coerce")
            row["db_queries_mean"] = float(q.mean()) if q.notna().any() else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def compare(
    samples: pd.DataFrame, baseline: str, variant: str, stat_p: int = 50, seed: int = 0
) -> dict:
    """Ratio baseline/variant of a latency percentile, with a bootstrap 95% CI and a verdict.

    A ratio above 1 means `variant` is faster than `baseline`.
    """
    a = samples.loc[samples["variant"] == baseline, "latency_ms"].to_numpy(dtype=float)
    b = samples.loc[samples["variant"] == variant, "latency_ms"].to_numpy(dtype=float)
    if len(a) < 2 or len(b) < 2:
        return {
            "baseline": baseline,
            "variant": variant,
            "statistic": f"p{stat_p}",
            "ratio": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "verdict": "not enough samples",
        }
    rng = np.random.default_rng(seed)
    if len(a) > MAX_BOOTSTRAP_SAMPLES:
        a = rng.choice(a, MAX_BOOTSTRAP_SAMPLES, replace=False)
    if len(b) > MAX_BOOTSTRAP_SAMPLES:
        b = rng.choice(b, MAX_BOOTSTRAP_SAMPLES, replace=False)
    ratio = np.percentile(a, stat_p) / max(np.percentile(b, stat_p), 1e-9)
    boots = []
    for _ in range(BOOTSTRAP_ROUNDS):
        ra = np.percentile(rng.choice(a, len(a)), stat_p)
        rb = np.percentile(rng.choice(b, len(b)), stat_p)
        boots.append(ra / max(rb, 1e-9))
    lo, hi = np.percentile(boots, [2.5, 97.5])
    if lo > 1:
        verdict = "faster"
    elif hi < 1:
        verdict = "slower"
    else:
        verdict = "no significant difference"
    return {
        "baseline": baseline,
        "variant": variant,
        "statistic": f"p{stat_p}",
        "ratio": float(ratio),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "verdict": verdict,
    }
