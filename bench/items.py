"""The eight things `make bench` measures about the lab itself.

Each function takes the run's `Bench` context and returns result lines. Comparisons are ratios
taken within one run, on the same machine, minutes apart (and interleaved where it is cheap), so
they say more than absolute numbers from a shared laptop can.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from bench import measure
from bench.bare_app import BODY_BYTES_ENV
from bench.report import Row, verdict_at_least, verdict_at_most
from perflab import paths, profiling, services, stats, targets
from perflab.errors import LabError
from perflab.lab import Lab
from perflab.services import ServiceHandle, start_service

DETAIL = "/products/{product}"
LIST = "/products?limit=20&category={category}"
BARE_SERVICE = "benchbare"
# Items 4, 6 and 7 measure the service stack, not the database: their traffic asks for the 100
# most popular products only, so after the warm-up every detail request is a cache hit.
HOT_PRODUCTS = 100
# Item 5's bar lines: Zipf traffic over the 1,000 most popular products, the traffic of plain
# `locust -f loadtests/lab.py` (its default), which a cache serves warm after a second or two.
# Its info lines keep the whole catalog: the long tail's first reads are misses, so over a
# short run the hit ratio, not the cache, sets the effect (bench/README.md, item 5).
POPULAR_PRODUCTS = 1000


@dataclass
class Budget:
    """How long each load runs. `full` fits `make bench` in ~10 minutes on 2 cores."""

    duration: int  # closed-model loads, whole seconds (Locust's --run-time)
    warmup: float
    users: int
    fidelity_duration: int
    truth_seconds: float  # the reference client, before and after the lab's load (each)
    stall_period: float
    stall_length: float
    stall_periods: int
    open_rate: float
    open_users: int
    repeats: int  # interleaved A B / B A rounds where it is cheap
    demo: bool
    scale_configs: tuple[tuple[int, int], ...]  # (uvicorn workers, Locust workers)
    # Item 5's warm-cache and whole-catalog detail loads (three to five loads more): full only.
    cache_effects_in_full: bool = True
    # Item 8's sampled-10% variant (one load more): full only; the miniature measures the bar.
    tracing_sampled: bool = True

    @classmethod
    def full(cls) -> Budget:
        configs = ((1, 1), (2, 1), (1, 2), (2, 2))
        return cls(8, 2, 8, 10, 3, 10, 1, 3, 100, 10, 2, True, configs)

    @classmethod
    def quick(cls) -> Budget:
        configs = ((1, 1), (2, 2))
        return cls(2, 0.5, 4, 2, 0.4, 2, 0.2, 1, 100, 10, 1, False, configs, False, False)


@dataclass
class Bench:
    budget: Budget
    size: str
    work: Path  # raw Locust output, service logs
    lab: Lab = field(init=False)
    dataset: dict = field(init=False, default_factory=dict)
    failures: list[tuple[str, int, int]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.lab = Lab(size=self.size, log_dir=self.work / "logs")
        self.raw = self.work / "raw"

    def ensure_data(self) -> dict:
        if not self.dataset:
            self.dataset = self.lab.ensure_data()
        return self.dataset

    @property
    def extra(self) -> dict:
        d = self.ensure_data()
        return {
            "products": int(d.get("products", 1000)),
            "categories": int(d.get("categories", 10)),
        }

    @contextlib.contextmanager
    def catalog(self, label: str, workers: int = 1, **settings: Any) -> Iterator[ServiceHandle]:
        """A fresh catalog variant for one load, stopped right after it, as the lab's runner does.

        Never two variants at once: they share one database, and a naive variant drops the
        indexes an optimized one created (and the other way round) when it starts.
        """
        self.ensure_data()
        if workers > 1:
            # Two workers running the start-up index management at once collide on SQLite
            # ("database is locked" on ANALYZE) and one dies; start an optimized one-worker
            # variant first so the indexes exist, then let the workers leave them alone.
            with self.catalog(label + "-prep", queries="optimized", cache="none"):
                pass
            settings = {**settings, "manage_indexes": False}
        svc = self.lab.service("catalog", label=label, workers=workers, **settings)
        try:
            yield svc
        finally:
            svc.stop()
            with contextlib.suppress(ValueError):
                self.lab.services.remove(svc)

    @contextlib.contextmanager
    def bare(self, body_bytes: int = 0) -> Iterator[ServiceHandle]:
        """The bare FastAPI endpoint, through the same `start_service` (same uvicorn flags),
        answering a body of `body_bytes` (the catalog's, so both send as much)."""
        services.APPS.setdefault(BARE_SERVICE, "bench.bare_app:create_app")
        # The service runs in the lab's data folder (perflab.procs), not in the checkout: it
        # finds `bench` (a checkout-only package) on PYTHONPATH.
        here = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
        env = {BODY_BYTES_ENV: str(body_bytes), "PYTHONPATH": path}
        svc = start_service(BARE_SERVICE, env, self.work / "logs", label="bare-fastapi")
        try:
            yield svc
        finally:
            svc.stop()

    def load(
        self, url: str, path: str, label: str, *, hot: bool = False, products: int = 0, **kw
    ) -> measure.Load:
        """A closed-model load of the budget's length over the whole catalog's ids, or only the
        `products` most popular (`hot`: the HOT_PRODUCTS)."""
        b = self.budget
        products = HOT_PRODUCTS if hot else products
        extra = dict(self.extra)
        if products:
            extra["products"] = min(products, extra["products"])
        opts: dict[str, Any] = {"users": b.users, "duration": b.duration, "warmup": b.warmup}
        opts["extra"] = extra
        opts.update(kw)
        load = measure.lab_load(url, path, self.raw, label, **opts)
        if load.errors:
            self.failures.append((label, load.errors, len(load.samples)))
        return load

    def close(self) -> None:
        self.lab.close()


def _rel(value: float, truth: float) -> float:
    return (value / truth - 1) * 100 if truth else float("nan")


def _locust_pct(row: dict, p: str) -> str:
    """A percentile from Locust's --csv stats ("N/A" when its file holds no request yet)."""
    try:
        v = float(row.get(p))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "n/a"
    return f"{v:.4g} ms" if v == v else "n/a"


# --- 1 -----------------------------------------------------------------------------------------
def fidelity(b: Bench) -> list[Row]:
    """The lab's p50/p99 against a plain sequential client on the same server, same run."""
    rows: list[Row] = []
    bud = b.budget
    topic = "Fidelity"
    for mode, opts, what in (
        ("sleep", {"delay_ms": 20}, "sleeps 20 ms"),
        ("instant", {}, "answers at once"),
    ):
        target = measure.start_target(mode, b.work / "logs", **opts)
        try:
            before = measure.sequential_client(target.url, "/", bud.truth_seconds)
            lab = b.load(
                target.url,
                "/",
                f"fidelity-{mode}",
                users=1,
                duration=bud.fidelity_duration,
                warmup=bud.warmup,
            )
            after = measure.sequential_client(target.url, "/", bud.truth_seconds)
        finally:
            target.stop()
        truth = np.concatenate([before, after])
        for p, tol in ((50, 5.0), (99, 10.0)):
            t = float(np.percentile(truth, p))
            v = lab.pct(p)
            err = _rel(v, t)
            rows.append(
                Row(
                    1,
                    topic,
                    f"p{p}, service that {what}: lab vs sequential http.client",
                    err,
                    "%",
                    f"within ±{tol:g}%",
                    verdict_at_most(abs(err), tol),
                    f"lab {v:.3f} ms ({len(lab.samples)} req), truth {t:.3f} ms "
                    f"({len(truth)} req), plain Locust {_locust_pct(lab.locust, f'{p}%')}; "
                    f"means: lab {lab.samples['latency_ms'].mean():.3f} ms, Locust's own "
                    f"{_locust_pct(lab.locust, 'Average Response Time')}, "
                    f"truth {truth.mean():.3f} ms",
                )
            )
        if mode == "instant":
            lat = np.unique(lab.samples["latency_ms"].to_numpy(dtype=float))
            step = float(np.diff(lat).min()) if len(lat) > 1 else float("nan")
            rows.append(
                Row(
                    1,
                    topic,
                    "resolution of sub-millisecond latencies (smallest step between samples)",
                    step,
                    "ms",
                    "≤ 0.01 ms",
                    verdict_at_most(step, 0.01),
                    f"lab p50 {lab.pct(50):.3f} ms; plain Locust reports whole ms "
                    f"(p50 {_locust_pct(lab.locust, '50%')})",
                )
            )
    rows.append(open_model_fidelity(b))
    return rows


def open_model_fidelity(b: Bench) -> Row:
    """The open model's p50 against the same sequential client, on a two-speed server.

    `perflab load --rate 100` against a server answering 90% of requests after 5 ms and 10%
    after 50 ms once read p50 +15% above the plain client: the generator's users woke late
    (gevent.sleep waits whole milliseconds) and that lateness counts in the latency. Rounds of
    truth, lab, truth... interleaved; percentiles pooled over rounds.
    """
    bud = b.budget
    rate, users = 100.0, 100  # what `perflab load --rate 100` runs
    target = measure.start_target(
        "two-speed", b.work / "logs", delay_ms=5, slow_every=10, slow_ms=50
    )
    truth, loads = [], []
    try:
        truth.append(measure.sequential_client(target.url, "/", bud.truth_seconds))
        for r in range(bud.repeats):
            loads.append(
                b.load(
                    target.url,
                    "/",
                    f"fidelity-open-r{r}",
                    model="open",
                    rate=rate,
                    users=users,
                    duration=bud.fidelity_duration,
                    warmup=bud.warmup,
                )
            )
            truth.append(measure.sequential_client(target.url, "/", bud.truth_seconds))
    finally:
        target.stop()
    t = np.concatenate(truth)
    lab = pd.concat([ld.samples for ld in loads])
    t50, v50 = float(np.percentile(t, 50)), float(np.percentile(lab["latency_ms"], 50))
    err = _rel(v50, t50)
    late = lab["lateness_ms"].to_numpy(dtype=float)
    return Row(
        1,
        "Fidelity",
        f"p50, open model {rate:g} req/s, service that answers 90% after 5 ms and 10% after "
        "50 ms: lab vs sequential http.client",
        err,
        "%",
        "within ±5%",
        verdict_at_most(abs(err), 5.0),
        f"lab {v50:.3f} ms ({len(lab)} req, {users} users, {bud.repeats} round(s)), truth "
        f"{t50:.3f} ms ({len(t)} req); from sending (uncorrected) "
        f"{np.percentile(lab['service_ms'], 50):.3f} ms; generator lateness p50 "
        f"{np.percentile(late, 50):.3f} ms, p95 {np.percentile(late, 95):.3f} ms, mean "
        f"{late.mean():.3f} ms",
    )


# --- 2 -----------------------------------------------------------------------------------------
def coordinated_omission(b: Bench) -> list[Row]:
    bud = b.budget
    window = bud.stall_period * bud.stall_periods
    target = measure.start_target(
        "stall", b.work / "logs", stall_s=bud.stall_length, period_s=bud.stall_period
    )
    try:
        load = b.load(
            target.url,
            "/",
            "co-stall",
            model="open",
            rate=bud.open_rate,
            users=bud.open_users,
            duration=math.ceil(bud.warmup + window + 1),
            warmup=bud.warmup,
        )
    finally:
        target.stop()
    s = load.samples
    # Exactly whole periods: any window of whole periods holds the same share of freeze.
    s = s[s["t_intended"] < s["t_intended"].min() + window]
    rows = []
    for p in (95, 99):
        # answers at once outside a freeze: the analytic quantile with no base latency
        truth = targets.stall_percentile(p / 100, 0.0, bud.stall_period, bud.stall_length)
        corrected = float(np.percentile(s["latency_ms"], p))
        uncorrected = float(np.percentile(s["service_ms"], p))
        err = _rel(corrected, truth)
        rows.append(
            Row(
                2,
                "Coordinated omission",
                f"corrected p{p}, service frozen {bud.stall_length:g} s every "
                f"{bud.stall_period:g} s, open model {bud.open_rate:g} req/s",
                err,
                "%",
                "within ±15% of analytic truth",
                verdict_at_most(abs(err), 15.0),
                f"corrected {corrected:.1f} ms vs truth {truth:.1f} ms; uncorrected "
                f"(from send) {uncorrected:.1f} ms; {len(s)} req over {window:g} s, "
                f"{bud.open_users} users",
            )
        )
    return rows


# --- 3 -----------------------------------------------------------------------------------------
def harness_overhead(b: Bench) -> list[Row]:
    bud = b.budget
    target = measure.start_target("instant", b.work / "logs")
    lab_rps, bare_rps = [], []
    try:
        for r in range(bud.repeats):
            order = ("bare", "lab") if r % 2 == 0 else ("lab", "bare")
            for who in order:
                label = f"harness-{who}-r{r}"
                if who == "lab":
                    load = b.load(target.url, "/", label, users=bud.users)
                    lab_rps.append(float(load.locust_requests or np.nan) / bud.duration)
                else:
                    n = measure.bare_locust(
                        target.url, "/", b.raw, label, users=bud.users, duration=bud.duration
                    )
                    bare_rps.append(float(n or np.nan) / bud.duration)
    finally:
        target.stop()
    ratio = float(np.mean(lab_rps) / np.mean(bare_rps))
    return [
        Row(
            3,
            "Harness overhead",
            "throughput, lab runner (raw samples on) / bare `locust` CLI, same endpoint",
            ratio,
            "x",
            "≥ 0.85",
            verdict_at_least(ratio, 0.85),
            f"lab {np.mean(lab_rps):.0f} req/s vs bare {np.mean(bare_rps):.0f} req/s "
            f"(requests in Locust's final summary over the same --run-time, {bud.users} users, "
            f"{bud.repeats} round(s) interleaved: "
            f"lab {', '.join(f'{x:.0f}' for x in lab_rps)}; "
            f"bare {', '.join(f'{x:.0f}' for x in bare_rps)})",
        )
    ]


# --- 4 -----------------------------------------------------------------------------------------
def _interleaved(
    b: Bench, prefix: str, variants: dict[str, dict[str, Any]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Each catalog variant (memory cache, hot products: every read a hit) under the same load,
    rounds alternating the order; mean throughput and pooled p50 latency per variant."""
    loads: dict[str, list[measure.Load]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(b.budget.repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            label = f"{prefix}-{name}-r{r}"
            with b.catalog(label, queries="optimized", cache="memory", **variants[name]) as svc:
                loads[name].append(b.load(svc.url, DETAIL, label, hot=True))
    rps = {k: float(np.mean([x.rps for x in v])) for k, v in loads.items()}
    p50 = {
        k: float(np.percentile(pd.concat([x.samples for x in v])["latency_ms"], 50))
        for k, v in loads.items()
    }
    return rps, p50


def instrumentation_overhead(b: Bench) -> list[Row]:
    bud = b.budget
    # Tracing is item 8: off in both, so this item measures logs, metrics and headers alone.
    rps, p50 = _interleaved(
        b,
        "instr",
        {
            "on": {"tracing": "off"},
            "off": {
                "log_enabled": False,
                "metrics_enabled": False,
                "headers_enabled": False,
                "tracing": "off",
            },
        },
    )
    ratio = rps["on"] / rps["off"]
    return [
        Row(
            4,
            "Instrumentation overhead",
            "throughput, logs + metrics + headers on / all off (detail endpoint, cache hits)",
            ratio,
            "x",
            "≥ 0.90",
            verdict_at_least(ratio, 0.90),
            f"on {rps['on']:.0f} req/s, off {rps['off']:.0f} req/s; memory cache, "
            f"{HOT_PRODUCTS} hot products, {bud.users} users, {bud.repeats} round(s) interleaved",
        ),
        Row(
            4,
            "Instrumentation overhead",
            "p50 difference, on − off",
            p50["on"] - p50["off"],
            "ms",
            "— (reported)",
            "info",
            f"p50 on {p50['on']:.3f} ms, off {p50['off']:.3f} ms",
        ),
    ]


# --- 5 -----------------------------------------------------------------------------------------
def rate_ratio_ci(
    a: pd.DataFrame, b: pd.DataFrame, rounds: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Throughput ratio a/b (successful requests per second) with a 95% counting interval.

    A slow variant may finish only a dozen requests in a run, too few for per-second bins, so
    the interval treats each run's count as Poisson and resamples the counts (a parametric
    bootstrap). Requests of a closed-model load are more regular than Poisson arrivals, so the
    interval errs on the wide side.
    """
    na, nb = int(a["ok"].sum()), int(b["ok"].sum())
    ta, tb = stats.window_seconds(a), stats.window_seconds(b)
    point = (na / ta) / (nb / tb) if nb else float("nan")
    rng = np.random.default_rng(seed)
    boots = (rng.poisson(na, rounds) / ta) / (np.maximum(rng.poisson(nb, rounds), 0.5) / tb)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(point), float(lo), float(hi)


def effect_sizes(b: Bench) -> list[Row]:
    # The naive list endpoint may take seconds per request on the big dataset: twice the usual
    # length, or it finishes too few requests after the warm-up to be counted.
    dur = 2 * b.budget.duration
    with b.catalog("effect-list-naive", queries="naive", cache="none") as svc:
        try:
            ln: measure.Load | None = b.load(svc.url, LIST, "effect-list-naive", duration=dur)
        except LabError:  # not one page in `dur` s: popular products have thousands of reviews
            ln = None
    with b.catalog("effect-list-optimized", queries="optimized", cache="none") as svc:
        lo_ = b.load(svc.url, LIST, "effect-list-optimized", duration=dur)
    if ln is not None and not ln.samples.empty:
        ratio, lo, hi = rate_ratio_ci(lo_.samples, ln.samples)
        detail = f"95% CI {lo:.1f}–{hi:.1f}x; naive {ln.rps:.1f} req/s ({len(ln.samples)} req)"
    else:
        # No naive request finished: with `users` in flight the whole time, naive ran at
        # fewer than users/dur requests per second, so the ratio is at least this.
        ratio = lo_.rps * dur / b.budget.users
        detail = f"a lower bound: naive finished no request in {dur} s ({b.budget.users} users)"
    rows = [
        Row(
            5,
            "Effect sizes",
            f"list endpoint throughput, optimized / naive (`{b.size}` dataset)",
            ratio,
            "x",
            "≥ 10x",
            verdict_at_least(ratio, 10),
            f"{detail}; optimized {lo_.rps:.0f} req/s ({len(lo_.samples)} req)",
        )
    ]
    if not b.budget.cache_effects_in_full:
        caches = ("redis", "memory")
        return rows + _detail_effects(b, "popular", POPULAR_PRODUCTS, caches, warm=False)
    # The whole catalog first, while the caches are cold (Redis keeps what a variant stored).
    rows += _detail_effects(b, "catalog", 0, ("redis",))
    rows += _detail_effects(b, "popular", POPULAR_PRODUCTS, ("redis", "memory"))
    return rows


def _hit_ratio(load: measure.Load) -> float:
    s = load.samples
    return float((s["x_cache"] == "hit").mean()) if len(s) else float("nan")


def _detail_effects(
    b: Bench, scope: str, products: int, caches: tuple[str, ...], warm: bool = True
) -> list[Row]:
    """p50 of the detail endpoint without a cache vs with each cache, same traffic.

    `popular` (the bar): Zipf over the POPULAR_PRODUCTS most popular ids, a warm cache after
    the warm-up; `catalog` (reported): Zipf over every product, first reads and all.
    """
    detail: dict[str, measure.Load] = {}
    # The popular traffic is measured warm: a warm-up as long as the run fills the cache with
    # the same traffic first (excluded from the statistics, as the lab's runner excludes its own).
    run = b.budget.duration
    longer: dict[str, Any] = (
        {"warmup": float(run), "duration": 2 * run} if products and warm else {}
    )
    for cache in ("none", *caches):
        label = f"effect-detail-{scope}-{cache}"
        with b.catalog(label, queries="optimized", cache=cache) as svc:
            detail[cache] = b.load(svc.url, DETAIL, label, products=products, **longer)
    both = pd.concat([ld.samples.assign(variant=k) for k, ld in detail.items()])
    total = b.extra["products"]
    traffic = (
        f"Zipf over the {products:,} most popular of {total:,} products"
        if 0 < products < total
        else f"Zipf over all {total:,} products" + ("" if products else ", fresh caches")
    )
    rows = []
    for cache in caches:
        bar = {"redis": 3.0, "memory": 5.0}[cache] if products else None
        c = stats.compare(both, "none", cache, 50)
        rows.append(
            Row(
                5,
                "Effect sizes",
                f"detail endpoint p50, none / {cache} cache ({scope})",
                c["ratio"],
                "x",
                f"≥ {bar:g}x" if bar else "— (reported)",
                verdict_at_least(c["ratio"], bar) if bar else "info",
                f"95% CI {c['ci_low']:.2f}–{c['ci_high']:.2f}x; p50 none "
                f"{detail['none'].pct(50):.3f} ms, {cache} {detail[cache].pct(50):.3f} ms; "
                f"hit ratio {_hit_ratio(detail[cache]):.2f}; {traffic} "
                f"(Redis: {b.lab.redis_source})",
            )
        )
    return rows


# --- 6 -----------------------------------------------------------------------------------------
def closeness_to_limit(b: Bench) -> list[Row]:
    """The catalog's fastest read (a memory-cache hit, logs, metrics and headers on) against a
    bare `async def` FastAPI endpoint sending as many bytes, measured from outside with wrk,
    interleaved; then what the lab's profiler costs on that read, and where its time goes."""
    if not measure.wrk_available():
        return _closeness_with_locust(b)
    bud = b.budget
    seconds = max(1.0, bud.duration / 2)
    rounds = 2 * bud.repeats + 1
    logs = b.work / "logs"
    # The bar's read: logs, metrics and timing headers on, tracing at the service's default
    # (off). The lab traces every request of the services it starts; on this read that doubles
    # the CPU per request (bench/results/hotpath.md), and the tracing line measures it.
    with b.catalog("limit-catalog", queries="optimized", cache="memory", tracing="off") as cat:
        path = "/products/1"
        body = httpx.get(cat.url + path).content  # a miss: from now on, hits
        with b.bare(len(body)) as bare:
            fast: list[float] = []
            base: list[float] = []
            for r in range(rounds):
                for who in ("catalog", "bare") if r % 2 == 0 else ("bare", "catalog"):
                    if who == "catalog":
                        fast.append(measure.wrk_rps(cat.url + path, seconds, logs / "wrk.log"))
                    else:
                        base.append(measure.wrk_rps(bare.url + path, seconds, logs / "wrk.log"))
        ratios = [f / x for f, x in zip(fast, base, strict=True)]
        ratio = float(np.median(ratios))
        rows = [
            Row(
                6,
                "Closeness to the limit",
                "throughput, fastest detail variant (memory cache hit) / bare FastAPI, wrk",
                ratio,
                "x",
                "≥ 0.6",
                verdict_at_least(ratio, 0.6),
                f"median of {rounds} interleaved pairs (ratios {_span(ratios, 2)}); catalog "
                f"{np.median(fast):.0f} req/s, bare `async def` {np.median(base):.0f} req/s; "
                f"{len(body)} bytes each, 1 uvicorn worker, wrk 1 thread 8 connections "
                f"{seconds:g} s; logs, metrics, timing headers on, tracing off (the default)",
            )
        ]
        rows.append(_profiler_overhead(b, cat, path, seconds))
    return rows


def _span(values: list[float], digits: int) -> str:
    return f"{min(values):.{digits}f}–{max(values):.{digits}f}" if values else "none"


def _profiler_overhead(b: Bench, svc: ServiceHandle, path: str, seconds: float) -> Row:
    """wrk throughput of the same read with py-spy attached vs without, interleaved pairs."""
    logs = b.work / "logs"
    folder = b.work / "profiles"
    on: list[float] = []
    off: list[float] = []
    sessions: list[profiling.ProfileSession] = []
    assert svc.proc is not None
    for r in range(b.budget.repeats + 1):
        for attached in (True, False) if r % 2 == 0 else (False, True):
            if not attached:
                off.append(measure.wrk_rps(svc.url + path, seconds, logs / "wrk.log"))
                continue
            pids = profiling.service_pids(svc.proc.pid)
            with profiling.profile(pids, folder, label="limit-catalog") as session:
                on.append(measure.wrk_rps(svc.url + path, seconds, logs / "wrk.log"))
            sessions.append(session)
    ratios = [a / x for a, x in zip(on, off, strict=True)]
    ratio = float(np.median(ratios))
    where = "no profile written"
    prof = sessions[-1].profiles[0] if sessions and sessions[-1].profiles else None
    speedscope = prof.speedscope if prof is not None else None
    if prof is not None and speedscope is not None:
        top = profiling.groups(speedscope).sort_values("self_pct", ascending=False)
        (folder / "limit-catalog-groups.md").write_text(profiling.markdown(top) + "\n")
        (folder / "limit-catalog-table.md").write_text(
            profiling.markdown(profiling.table(speedscope)) + "\n"
        )
        where = "where the time goes: " + ", ".join(
            f"{g} {p:.0f}%" for g, p in top.head(5).itertuples(index=False)
        )
        where += f" ({prof.note})"
    return Row(
        6,
        "Profiler overhead",
        "throughput with the lab's profiler attached / without (memory cache hit, wrk)",
        ratio,
        "x",
        "≥ 0.8",
        verdict_at_least(ratio, 0.8),
        f"median of {len(ratios)} interleaved pairs (ratios {_span(ratios, 2)}); "
        f"py-spy {profiling.DEFAULT_RATE} Hz; {where}",
    )


def _closeness_with_locust(b: Bench) -> list[Row]:
    """Without wrk: the lab's Locust load (which tops out near a bare endpoint's speed, so the
    ratio comes out closer to 1 than it is)."""
    bud = b.budget
    fast: list[float] = []
    bare: list[float] = []
    for r in range(bud.repeats):
        for who in ("catalog", "bare") if r % 2 == 0 else ("bare", "catalog"):
            if who == "catalog":
                label = f"limit-catalog-r{r}"
                with b.catalog(label, queries="optimized", cache="memory") as svc:
                    fast.append(b.load(svc.url, DETAIL, label, hot=True).rps)
            else:
                with b.bare() as svc:
                    bare.append(b.load(svc.url, DETAIL, f"limit-bare-r{r}", hot=True).rps)
    ratio = float(np.mean(fast) / np.mean(bare))
    return [
        Row(
            6,
            "Closeness to the limit",
            "throughput, fastest detail variant (memory cache, hits) / bare FastAPI, Locust",
            ratio,
            "x",
            "≥ 0.6",
            verdict_at_least(ratio, 0.6),
            f"catalog {np.mean(fast):.0f} req/s vs bare {np.mean(bare):.0f} req/s, "
            f"same uvicorn flags, 1 worker, {HOT_PRODUCTS} hot products; wrk is not on PATH "
            "(`apt-get install wrk`): Locust's own ceiling makes this ratio optimistic",
        )
    ]


# --- 7 -----------------------------------------------------------------------------------------
def _mb(n: int) -> float:
    return n / 2**20


def scale(b: Bench) -> list[Row]:
    bud = b.budget
    rows: list[Row] = []
    rps: dict[tuple[int, int], float] = {}
    for uv, lw in bud.scale_configs:
        label = f"scale-uv{uv}-lw{lw}"
        users = max(bud.users, 2 * lw)
        with b.catalog(label, workers=uv, queries="optimized", cache="memory") as svc:
            rps[(uv, lw)] = b.load(svc.url, DETAIL, label, workers=lw, users=users, hot=True).rps
    base = rps[(1, 1)]
    for (uv, lw), v in rps.items():
        rows.append(
            Row(
                7,
                "Scale",
                f"throughput, {uv} uvicorn worker(s) × {lw} Locust worker(s), vs 1 × 1",
                v / base,
                "x",
                "— (reported)",
                "info",
                f"{v:.0f} req/s (1 × 1: {base:.0f} req/s), detail endpoint, memory cache hits",
            )
        )
    if bud.demo:
        run = measure.run_measured(
            [sys.executable, "-m", "perflab.cli", "demo"], b.work / "demo.log", timeout=420
        )
        ok = run.returncode == 0 and not run.timed_out
        rows.append(
            Row(
                7,
                "Scale",
                "`make demo` (perflab demo): wall time",
                run.seconds,
                "s",
                "— (reported)",
                "info" if ok else "error",
                f"peak RSS of its process tree {_mb(run.peak_rss):.0f} MiB; exit code "
                f"{run.returncode}{' (timed out)' if run.timed_out else ''}",
            )
        )
    else:
        rows.append(
            Row(
                7,
                "Scale",
                "`make demo`: wall time and peak RSS",
                None,
                "s",
                "— (reported)",
                "skipped",
                "not run with --quick",
            )
        )
    rows.append(notebooks())
    return rows


def notebooks() -> Row:
    """The notebooks are not run here: in quick mode they take longer than the bench's whole
    10-minute budget (a bench that ran them was always cut short). `make classroom-check`
    times each one (docs/instructor.md) and `make test` runs them all."""
    from perflab.classroom.notebooks import all_notebooks

    found = all_notebooks() if paths.NOTEBOOKS.is_dir() else []
    return Row(
        7,
        "Scale",
        "the notebooks: wall time and peak RSS",
        None,
        "s",
        "— (reported)",
        "skipped",
        f"{len(found)} notebooks, longer than this bench's budget: `make classroom-check` "
        "times each one (docs/instructor.md), `make test` runs them all",
    )


# --- 8 -----------------------------------------------------------------------------------------
def tracing_overhead(b: Bench) -> list[Row]:
    """OpenTelemetry tracing always on, and sampled 10%, against off (the `tracing` experiment's
    variants; logs, metrics and headers on in all three)."""
    bud = b.budget
    variants: dict[str, dict[str, Any]] = {"off": {"tracing": "off"}}
    if bud.tracing_sampled:
        variants["sampled"] = {"tracing": "ratio", "trace_ratio": 0.1}
    variants["always"] = {"tracing": "always"}
    rps, p50 = _interleaved(b, "tracing", variants)
    always = rps["always"] / rps["off"]
    where = (
        f"memory cache, {HOT_PRODUCTS} hot products, {bud.users} users, "
        f"{bud.repeats} round(s) interleaved"
    )
    rows = [
        Row(
            8,
            "Tracing overhead",
            "throughput, tracing always on / off (detail endpoint, cache hits)",
            always,
            "x",
            "≥ 0.85",
            verdict_at_least(always, 0.85),
            f"always {rps['always']:.0f} req/s, off {rps['off']:.0f} req/s; p50 off "
            f"{p50['off']:.3f} ms, always {p50['always']:.3f} ms; {where}",
        ),
    ]
    if "sampled" in rps:
        rows.append(
            Row(
                8,
                "Tracing overhead",
                "throughput, sampled 10% / off",
                rps["sampled"] / rps["off"],
                "x",
                "— (reported)",
                "info",
                f"sampled {rps['sampled']:.0f} req/s, p50 {p50['sampled']:.3f} ms",
            )
        )
    return rows


ITEMS = [
    (1, "Fidelity", fidelity),
    (2, "Coordinated omission", coordinated_omission),
    (3, "Harness overhead", harness_overhead),
    (4, "Instrumentation overhead", instrumentation_overhead),
    (5, "Effect sizes", effect_sizes),
    (6, "Closeness to the limit", closeness_to_limit),
    (7, "Scale", scale),
    (8, "Tracing overhead", tracing_overhead),
]
