"""Statistics from raw samples: exact percentiles, bootstrap intervals, verdicts, gates.

Percentiles come from every recorded latency (not Locust's rounded buckets).

Intervals are 95% percentile bootstraps (`BOOTSTRAP_ROUNDS` rounds, a fixed seed so a saved run's
numbers can be reproduced): resample, recompute the statistic, take the 2.5th and 97.5th
percentiles of what came out. How to resample follows how the samples were produced:

- One repetition: resample its requests with replacement.
- Several repetitions (`--repeat N`): a hierarchical bootstrap. Draw N repetitions with
  replacement, then resample the requests within each drawn repetition, and pool them. Requests
  of one repetition share its machine state (a warmer CPU, another tenant, a fuller cache), so
  pooling every request as independent would hide run-to-run drift and make a difference that
  only one repetition shows look certain; drawing repetitions first carries that drift into the
  interval. With few repetitions the interval is wide: that is what they can tell.
- Throughput (`rps`): each repetition's successful requests over its measured window, averaged
  over repetitions. Within a repetition the count is redrawn as Poisson (a closed-model load is
  more regular than Poisson arrivals, so the interval errs on the wide side); repetitions are
  drawn as above.

For two sets of samples (a baseline and a variant, or two saved runs) each side is resampled on
its own and the ratio recomputed each round. The ratio is the *speed-up* of the second over the
first (latency: first / second; throughput: second / first), so above 1 always means faster;
"faster" or "slower" is said only when the whole interval is on one side of 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

PERCENTILES = (50, 90, 95, 99)
CI_PERCENTILES = (50, 95, 99)
BOOTSTRAP_ROUNDS = 200
MAX_BOOTSTRAP_SAMPLES = 20_000
CONFIDENCE = 95

# The columns `summarize` writes after the group keys, in order. Open-model runs add the
# `_uncorrected` percentiles, samples with the diagnostic headers add the last two.
STAT_COLUMNS = [
    "requests",
    "failures",
    "error_rate",
    "rps",
    "rps_sd",
    *[f"p{p}_ms" for p in PERCENTILES],
    "max_ms",
    "mean_ms",
    *[f"p{p}_ci_{side}" for p in CI_PERCENTILES for side in ("low", "high")],
]
UNCORRECTED_COLUMNS = [f"p{p}_ms_uncorrected" for p in PERCENTILES]
HEADER_COLUMNS = ["cache_hit_ratio", "db_queries_mean"]
# What `compare` returns, and so the columns of a run's comparison.csv (after `experiment`).
COMPARE_COLUMNS = ["baseline", "variant", "statistic", "ratio", "ci_low", "ci_high", "verdict"]
DEFAULT_STATISTICS = ("p50", "p95")
# The loads a warm-up is dropped from: each experiment's variants, in each repetition.
LOAD_KEYS = ("experiment", "variant", "repeat")

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def parse_statistics(text: str | Iterable[str]) -> list[str]:
    """`"p50,p95,rps"` -> `["p50", "p95", "rps"]`; ValueError naming what is not a statistic."""
    names = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text)]

    def ok(n: str) -> bool:
        return n == "rps" or bool(re.fullmatch(r"p\d{1,2}(\.\d+)?", n) and float(n[1:]) > 0)

    bad = [n for n in names if not ok(n)]
    if bad or not names:
        raise ValueError(
            f"not a statistic: {', '.join(bad) or repr(text)} (use pNN percentiles and rps, "
            "e.g. p50,p95,p99,rps)"
        )
    return list(dict.fromkeys(names))


def _percent(statistic: str) -> float:
    return float(statistic[1:])


def measured(samples: pd.DataFrame, warmup: float | None = None) -> pd.DataFrame:
    """Drop the warm-up: requests meant to start in the first `warmup` seconds of each load.

    Every load warms up, so the cut is made per load (each experiment, variant and repetition
    present in `samples`). Without `warmup`, each sample's own `warmup_s` (saved with every run)
    is used.
    """
    if samples.empty:
        return samples
    keys = [c for c in LOAD_KEYS if c in samples.columns]
    if keys:
        first = samples.groupby(keys, sort=False)["t_intended"].transform("min")
    else:
        first = pd.Series(samples["t_intended"].min(), index=samples.index)
    cut = samples["warmup_s"] if warmup is None else warmup
    return samples[samples["t_intended"] >= first + cut]


def window_seconds(samples: pd.DataFrame) -> float:
    """Wall time the measured requests span (start of the first to end of the last)."""
    if samples.empty:
        return 0.0
    ends = samples["t_start"] + samples["service_ms"] / 1000
    return float(max(ends.max() - samples["t_intended"].min(), 1e-9))


def _repeats(samples: pd.DataFrame) -> list[pd.DataFrame]:
    """The samples of each repetition (one part when there is no `repeat` column)."""
    if "repeat" not in samples.columns:
        return [samples]
    return [g for _, g in samples.groupby("repeat", sort=True)]


def _latency_parts(samples: pd.DataFrame) -> list[FloatArray]:
    return [r["latency_ms"].to_numpy(dtype=float) for r in _repeats(samples)]


def _rps_parts(samples: pd.DataFrame) -> tuple[FloatArray, FloatArray]:
    """Per repetition: successful requests, and the measured window in seconds."""
    reps = _repeats(samples)
    ok = np.array([float(r["ok"].astype(bool).sum()) for r in reps])
    return ok, np.array([window_seconds(r) for r in reps])


def rps_each(samples: pd.DataFrame) -> FloatArray:
    """Successful requests per second of each repetition's measured window."""
    ok, window = _rps_parts(samples)
    return ok / window


def _cap(parts: list[FloatArray], rng: np.random.Generator) -> list[FloatArray]:
    """At most `MAX_BOOTSTRAP_SAMPLES` values in all, each repetition subsampled alike."""
    total = sum(len(p) for p in parts)
    if total <= MAX_BOOTSTRAP_SAMPLES:
        return parts
    keep = MAX_BOOTSTRAP_SAMPLES / total
    return [rng.choice(p, max(1, int(len(p) * keep)), replace=False) for p in parts]


def _resamples(
    parts: Sequence[FloatArray], rounds: int, rng: np.random.Generator
) -> Iterable[FloatArray]:
    """Bootstrap resamples: repetitions drawn with replacement, then requests within each."""
    k = len(parts)
    for _ in range(rounds):
        chosen = rng.integers(0, k, k) if k > 1 else (0,)
        yield np.concatenate(
            [parts[i][rng.integers(0, len(parts[i]), len(parts[i]))] for i in chosen]
        )


def _rps_resamples(
    ok: FloatArray, window: FloatArray, rounds: int, rng: np.random.Generator
) -> FloatArray:
    """Bootstrap throughputs: repetitions drawn with replacement, each count redrawn as Poisson."""
    k = len(ok)
    idx = rng.integers(0, k, (rounds, k)) if k > 1 else np.zeros((rounds, 1), dtype=int)
    return (rng.poisson(ok[idx]) / window[idx]).mean(axis=1)


def _bootstrap(
    parts: Sequence[FloatArray],
    stat: Callable[[FloatArray], Any],
    rng: np.random.Generator,
    rounds: int = BOOTSTRAP_ROUNDS,
) -> FloatArray:
    """`stat` of each resample (`stat` may return several numbers: one row per round)."""
    capped = _cap([np.asarray(p, dtype=float) for p in parts if len(p)], rng)
    return np.array([stat(s) for s in _resamples(capped, rounds, rng)])


def _interval(boots: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The central `CONFIDENCE`% of bootstrap values (per column when there are several)."""
    tail = (100 - CONFIDENCE) / 2
    lo, hi = np.percentile(boots, [tail, 100 - tail], axis=0)
    return lo, hi


def bootstrap_ci(
    values: FloatArray | Sequence[FloatArray],
    stat: Callable[[FloatArray], float],
    rounds: int = BOOTSTRAP_ROUNDS,
    seed: int = 0,
) -> tuple[float, float]:
    """95% interval of `stat(values)`. Give a list of arrays, one per repetition, for the
    hierarchical bootstrap (repetitions first, then requests within them); (nan, nan) when there
    are fewer than two values."""
    parts = [values] if isinstance(values, np.ndarray) else list(values)
    if sum(len(p) for p in parts) < 2:
        return (float("nan"), float("nan"))
    lo, hi = _interval(_bootstrap(parts, stat, np.random.default_rng(seed), rounds))
    return float(lo), float(hi)


def summarize(samples: pd.DataFrame, by: list[str], open_model: bool = False) -> pd.DataFrame:
    """One row per group: requests, failures, rps and latency percentiles (ms) with 95% CIs.

    `samples` must already exclude warm-up (`measured`). rps is each repetition's successful
    requests over its measured window, averaged over repetitions (`rps_sd` is their spread);
    the percentiles' intervals are hierarchical over repetitions (see the module's docstring).
    """
    rows = []
    for key, g in samples.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        lat = g["latency_ms"].to_numpy(dtype=float)
        ok = g["ok"].to_numpy(dtype=bool)
        each = rps_each(g)
        row: dict[str, object] = dict(zip(by, key, strict=True))
        row.update(
            requests=len(g),
            failures=int((~ok).sum()),
            error_rate=float((~ok).mean()),
            rps=float(np.mean(each)),
            rps_sd=float(np.std(each, ddof=1)) if len(each) > 1 else float("nan"),
        )
        for p in PERCENTILES:
            row[f"p{p}_ms"] = float(np.percentile(lat, p))
        row["max_ms"] = float(lat.max())
        row["mean_ms"] = float(lat.mean())
        lows, highs = _percentile_cis(_latency_parts(g), CI_PERCENTILES)
        for p, lo, hi in zip(CI_PERCENTILES, lows, highs, strict=True):
            row[f"p{p}_ci_low"], row[f"p{p}_ci_high"] = lo, hi
        if open_model:
            raw = g["service_ms"].to_numpy(dtype=float)
            for p in PERCENTILES:
                row[f"p{p}_ms_uncorrected"] = float(np.percentile(raw, p))
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
    if not rows:  # the same columns, so that code reading a summary need not special-case it
        extra = UNCORRECTED_COLUMNS if open_model else []
        sources = zip(HEADER_COLUMNS, ("x_cache", "x_db_queries"), strict=True)
        extra = [*extra, *(col for col, src in sources if src in samples.columns)]
        return pd.DataFrame(columns=[*by, *STAT_COLUMNS, *extra])
    return pd.DataFrame(rows)


def _percentile_cis(
    parts: list[FloatArray], ps: Sequence[float], seed: int = 0
) -> tuple[list[float], list[float]]:
    """Intervals of several percentiles from one set of resamples."""
    if sum(len(p) for p in parts) < 2:
        return [float("nan")] * len(ps), [float("nan")] * len(ps)
    boots = _bootstrap(parts, lambda s: np.percentile(s, ps), np.random.default_rng(seed))
    lo, hi = _interval(boots)
    return [float(x) for x in lo], [float(x) for x in hi]


def _verdict(lo: float, hi: float) -> str:
    if lo > 1:
        return "faster"
    if hi < 1:
        return "slower"
    return "no significant difference"


def compare(
    samples: pd.DataFrame,
    baseline: str,
    variant: str,
    statistic: str | int = "p50",
    seed: int = 0,
) -> dict[str, Any]:
    """The speed-up of `variant` over `baseline` on one statistic, with a 95% interval and a
    verdict: `ratio` above 1 means `variant` is faster (latency percentiles: baseline / variant;
    `rps`: variant / baseline).

    `samples` holds both, told apart by their `variant` column, warm-up already dropped; with a
    `repeat` column the bootstrap is hierarchical (see the module's docstring).
    """
    name = f"p{statistic}" if isinstance(statistic, int) else parse_statistics([statistic])[0]
    a = samples[samples["variant"] == baseline]
    b = samples[samples["variant"] == variant]
    out: dict[str, Any] = {"baseline": baseline, "variant": variant, "statistic": name}
    if len(a) < 2 or len(b) < 2:
        nan = float("nan")
        return {**out, "ratio": nan, "ci_low": nan, "ci_high": nan, "verdict": "not enough samples"}
    rng = np.random.default_rng(seed)
    if name == "rps":
        (oa, wa), (ob, wb) = _rps_parts(a), _rps_parts(b)
        ratio = float(np.mean(ob / wb) / max(float(np.mean(oa / wa)), 1e-9))
        boot_a = _rps_resamples(oa, wa, BOOTSTRAP_ROUNDS, rng)
        boot_b = _rps_resamples(ob, wb, BOOTSTRAP_ROUNDS, rng)
        boots = boot_b / np.maximum(boot_a, 1e-9)
    else:
        p = _percent(name)
        pa, pb = _latency_parts(a), _latency_parts(b)
        ratio = float(np.percentile(np.concatenate(pa), p)) / max(
            float(np.percentile(np.concatenate(pb), p)), 1e-9
        )
        ra = _bootstrap(pa, lambda s: np.percentile(s, p), rng)
        rb = _bootstrap(pb, lambda s: np.percentile(s, p), rng)
        boots = ra / np.maximum(rb, 1e-9)
    lo, hi = (float(x) for x in _interval(boots))
    return {**out, "ratio": ratio, "ci_low": lo, "ci_high": hi, "verdict": _verdict(lo, hi)}


def value(samples: pd.DataFrame, statistic: str) -> float:
    """The statistic itself: a latency percentile in ms, or successful requests per second."""
    if samples.empty:
        return float("nan")
    if statistic == "rps":
        return float(np.mean(rps_each(samples)))
    return float(np.percentile(samples["latency_ms"].to_numpy(dtype=float), _percent(statistic)))


def compare_variants(
    samples: pd.DataFrame,
    baseline: str,
    variants: Iterable[str],
    statistics: Sequence[str] = DEFAULT_STATISTICS,
) -> pd.DataFrame:
    """Each variant against the baseline on each statistic (rows as `compare` returns them);
    variants absent from `samples` (they did not run) are left out."""
    present = set(samples["variant"]) if not samples.empty else set()
    rows = [
        compare(samples, baseline, v, s)
        for v in variants
        if v != baseline and v in present and baseline in present
        for s in statistics
    ]
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


RUN_COMPARE_KEYS = ["experiment", "variant", "endpoint"]


def compare_runs(
    base: pd.DataFrame, new: pd.DataFrame, statistics: Sequence[str] = DEFAULT_STATISTICS
) -> pd.DataFrame:
    """Two saved runs' samples, group by group (experiment, variant, endpoint) on each statistic.

    Each run's warm-up is dropped as it was saved (`warmup_s`). One row per group and statistic:
    the value in each run, the speed-up of NEW over BASE with its interval, and the verdict.
    """
    rows = []
    if base.empty or new.empty:
        return pd.DataFrame(columns=[*RUN_COMPARE_KEYS, "statistic", "base", "new", "ratio",
                                     "ci_low", "ci_high", "verdict"])  # fmt: skip
    mb, mn = measured(base), measured(new)
    for key, ga in mb.groupby(RUN_COMPARE_KEYS, sort=False):
        gb = mn
        for col, val in zip(RUN_COMPARE_KEYS, key, strict=True):
            gb = gb[gb[col] == val]
        if gb.empty:
            continue
        both = pd.concat([ga.assign(variant="BASE"), gb.assign(variant="NEW")], ignore_index=True)
        for s in statistics:
            c = compare(both, "BASE", "NEW", s)
            rows.append(
                {
                    **dict(zip(RUN_COMPARE_KEYS, key, strict=True)),
                    "statistic": s,
                    "base": value(ga, s),
                    "new": value(gb, s),
                    "ratio": c["ratio"],
                    "ci_low": c["ci_low"],
                    "ci_high": c["ci_high"],
                    "verdict": c["verdict"],
                }
            )
    return pd.DataFrame(rows)


def _slower_limit(statistic: pd.Series, margin: float) -> FloatArray:
    """The speed-up below which the second is slower by more than `margin` (0.1 for 10%):
    a latency percentile more than (1 + margin) times as high, or a throughput below
    (1 - margin) times the first's."""
    return np.where(statistic == "rps", 1.0 - margin, 1.0 / (1.0 + margin))


def regressions(table: pd.DataFrame, margin: float = 0.0) -> pd.DataFrame:
    """Rows of a comparison (`compare_runs`, `compare_variants`) whose whole interval says the
    second is slower than the first by more than `margin` (a fraction: 0.1 for 10%)."""
    if table.empty:
        return table
    return table[table["ci_high"] < _slower_limit(table["statistic"], margin)]


def describe_change(row: pd.Series | dict[str, Any]) -> str:
    """How much the statistic moved, with its interval: "p95 +61% (95% CI +55% to +68%)".

    A latency percentile's change is new / old - 1; throughput's too (so slower shows as
    +X% for latency and -X% for rps).
    """
    s = str(row["statistic"])
    ratio, low, high = (float(row[k]) for k in ("ratio", "ci_low", "ci_high"))
    if s == "rps":
        change, lo, hi = ratio - 1, low - 1, high - 1
    else:
        inv = [1 / max(x, 1e-12) - 1 for x in (ratio, high, low)]
        change, lo, hi = inv
    return f"{s} {change:+.1%} ({CONFIDENCE}% CI {lo:+.1%} to {hi:+.1%})"
