"""Capacity search: the highest arrival rate a variant sustains within a latency and error SLO.

"How many requests per second can this serve with p95 under 100 ms?" is answered with the open
model (requests arrive at a set rate whatever the service does, so a saturated service shows as
growing latency, not as a load that politely slows down): step the rate up (doubling) until a
step breaks the SLO, then bisect between the last rate that held and the first that broke until
the two are within `precision`. The answer is that interval: the service sustains `low` and
does not sustain `high`.

A load generator can saturate before the service does: one Locust process sends a few thousand
requests a second, less on a busy machine. Then requests leave *late* (the recorder's
`lateness_ms`: sent after their intended start) while the service still answers fast
(`service_ms`). Such a step is reported as the generator's limit, never as the service's: the
search stops there and says the capacity is at least the last rate that held (add Locust
workers, or a bigger load machine, to go further).

Users only supply concurrency in the open model; each step gets enough of them for the SLO's
latency at that rate (Little's law, with headroom), so a run out of users does not pass for a
slow service.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from perflab.errors import LabError
from perflab.loadgen import Endpoint, LoadProfile, run_load

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from perflab.experiments import Experiment
    from perflab.lab import Lab
    from perflab.results import Run

__all__ = [
    "SLO",
    "Capacity",
    "Step",
    "find_capacity",
    "judge",
    "measure_host",
    "plot",
    "run_capacity",
    "users_for",
]

# A step whose requests left this late (p-quantile of lateness, as a share of the SLO's limit)
# while the service answered within the SLO is the generator's limit, not the service's.
LATE_SHARE = 0.5
# A step that sent less than this share of its offered rate did not offer that load.
SENT_SHARE = 0.9
# A broken step within this factor of the SLO is measured once more (`marginal`).
MARGINAL = 3.0
# Locust says this when its process is CPU-bound (its numbers are then not to be trusted).
CPU_WARNING = "CPU usage above"


@dataclass(frozen=True)
class SLO:
    """`percentile` of latency (from the intended start: coordinated omission corrected) under
    `limit_ms`, and at most `max_error_rate` of requests failed."""

    percentile: float = 95.0
    limit_ms: float = 100.0
    max_error_rate: float = 0.01

    @classmethod
    def parse(cls, text: str) -> SLO:
        """`p95<100ms`, `p99<0.25s`, optionally `,errors<1%` (default 1%)."""
        slo = cls()
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lat = re.fullmatch(r"p(\d+(?:\.\d+)?)\s*<\s*(\d+(?:\.\d+)?)\s*(ms|s)", part)
            err = re.fullmatch(r"errors?\s*<\s*(\d+(?:\.\d+)?)\s*%", part)
            if lat:
                pct, value, unit = float(lat[1]), float(lat[2]), lat[3]
                if not 0 < pct < 100 or value <= 0:
                    raise LabError(f"SLO {part!r}: the percentile is 0-100, the limit positive")
                limit = value * (1000 if unit == "s" else 1)
                slo = SLO(pct, limit, slo.max_error_rate)
            elif err:
                slo = SLO(slo.percentile, slo.limit_ms, float(err[1]) / 100)
            else:
                raise LabError(
                    f"SLO {part!r} not understood: write it like p95<100ms or p99<0.5s, "
                    "optionally followed by ,errors<1%"
                )
        return slo

    def __str__(self) -> str:
        return f"p{self.percentile:g} < {self.limit_ms:g} ms, errors < {self.max_error_rate:.1%}"


@dataclass
class Step:
    """One load at one offered rate, judged against the SLO."""

    rate: float
    requests: int
    sent_rps: float
    ok_rps: float
    latency_ms: float  # the SLO's percentile, from the intended start
    service_ms: float  # the same percentile, from sending (what the service and network took)
    lateness_ms: float  # the same percentile of how late requests were sent
    error_rate: float
    cpu_warning: bool
    verdict: str  # "ok", "slow", "errors", "behind" (did not keep up), "generator"
    reason: str = ""

    @property
    def held(self) -> bool:
        return self.verdict == "ok"


@dataclass
class Capacity:
    """A variant's sustainable rate: it held `low` req/s and broke at `high` (None: never broke
    up to the largest rate tried). `generator_bound`: the search stopped because the load
    generator, not the service, ran out of breath; the capacity is then at least `low`."""

    variant: str
    slo: SLO
    low: float | None
    high: float | None
    generator_bound: bool
    steps: list[Step] = field(default_factory=list)

    def describe(self) -> str:
        if self.low is None and self.generator_bound:
            gen = self.steps[-1]
            return (
                f"{self.variant}: not measured: the load generator saturated at {gen.rate:.0f} "
                f"req/s ({gen.reason}) before any rate held; add Locust workers (--workers), "
                "a quieter or bigger load machine"
            )
        if self.low is None:
            first = self.steps[0] if self.steps else None
            why = f" ({first.reason})" if first else ""
            return f"{self.variant}: no rate tried held {self.slo}{why}"
        if self.generator_bound:
            gen = self.steps[-1]
            return (
                f"{self.variant}: at least {self.low:.0f} req/s; the load generator saturated at "
                f"{gen.rate:.0f} req/s ({gen.reason}), not the service: add Locust workers "
                "(--workers) or a bigger load machine to go further"
            )
        if self.high is None:
            return f"{self.variant}: at least {self.low:.0f} req/s (the largest rate tried held)"
        last_broken = next(s for s in self.steps if s.rate == self.high)
        return (
            f"{self.variant}: {self.low:.0f} req/s sustained within {self.slo}; "
            f"{self.high:.0f} req/s broke it ({last_broken.reason})"
        )


def users_for(rate: float, slo: SLO) -> int:
    """Concurrency for `rate` arrivals/s at up to 4x the SLO's latency (Little's law)."""
    return max(10, math.ceil(rate * slo.limit_ms / 1000 * 4))


def judge(
    samples: pd.DataFrame, rate: float, slo: SLO, warmup: float, cpu_warning: bool = False
) -> Step:
    """Judge one step's samples (the warm-up excluded) against the SLO."""
    if not samples.empty:
        first = samples["t_intended"].min()
        samples = samples[samples["t_intended"] >= first + warmup]
    if samples.empty:
        return Step(rate, 0, 0.0, 0.0, math.inf, math.inf, math.inf, 1.0, cpu_warning,
                    "behind", "no request was recorded")  # fmt: skip
    q = slo.percentile
    ok = samples["ok"].astype(bool).to_numpy()
    span = float(samples["t_intended"].max() - samples["t_intended"].min()) or 1e-9
    ends = samples["t_start"] + samples["service_ms"] / 1000
    window = max(float(ends.max() - samples["t_intended"].min()), 1e-9)
    step = Step(
        rate=rate,
        requests=len(samples),
        sent_rps=len(samples) / span if len(samples) > 1 else 0.0,
        ok_rps=float(ok.sum()) / window,
        latency_ms=float(np.percentile(samples["latency_ms"], q)),
        service_ms=float(np.percentile(samples["service_ms"], q)),
        lateness_ms=float(np.percentile(samples["lateness_ms"], q)),
        error_rate=float((~ok).mean()),
        cpu_warning=cpu_warning,
        verdict="ok",
    )
    late = step.lateness_ms > LATE_SHARE * slo.limit_ms
    behind = step.sent_rps < SENT_SHARE * rate
    service_fine = step.service_ms <= slo.limit_ms and step.error_rate <= slo.max_error_rate
    pq = f"p{q:g}"
    if service_fine and (late or behind or cpu_warning):
        step.verdict = "generator"
        why = [f"{pq} lateness {step.lateness_ms:.1f} ms"] if late else []
        why += [f"sent {step.sent_rps:.0f} of {rate:.0f} req/s"] if behind else []
        why += ["Locust warned its CPU was saturated"] if cpu_warning else []
        step.reason = ", ".join(why) + f" while the service answered in {step.service_ms:.1f} ms"
    elif step.error_rate > slo.max_error_rate:
        step.verdict, step.reason = "errors", f"{step.error_rate:.1%} of requests failed"
    elif step.latency_ms > slo.limit_ms:
        step.verdict = "slow"
        step.reason = f"{pq} {step.latency_ms:.1f} ms > {slo.limit_ms:g} ms"
    elif step.ok_rps < SENT_SHARE * rate:
        step.verdict = "behind"
        step.reason = f"served {step.ok_rps:.0f} of {rate:.0f} req/s"
    else:
        step.reason = f"{pq} {step.latency_ms:.1f} ms"
    return step


def marginal(step: Step, slo: SLO) -> bool:
    """A step that broke the SLO by little (latency within `MARGINAL` times the limit, errors
    within `MARGINAL` times the budget): measured again before it counts, since one stall of a
    busy machine can break a step the service would hold."""
    if step.verdict not in ("slow", "errors"):
        return False
    return step.latency_ms <= MARGINAL * slo.limit_ms and step.error_rate <= MARGINAL * max(
        slo.max_error_rate, 0.001
    )


def find_capacity(
    measure: Callable[[float], Step],
    slo: SLO,
    *,
    variant: str = "target",
    start: float = 50.0,
    max_rate: float = 20_000.0,
    precision: float = 0.1,
    max_steps: int = 14,
    say: Callable[[str], None] = lambda _msg: None,
    into: Capacity | None = None,
) -> Capacity:
    """Step the rate up from `start` (doubling, up to `max_rate`) until a step breaks the SLO,
    then bisect until high/low - 1 <= `precision` (or `max_steps` loads were made).
    `measure(rate)` runs one load and judges it (`judge`). Steps are added to `into` (a
    `Capacity` of yours) as they are made, so an interrupted search keeps them."""
    if start <= 0 or max_rate < start:
        raise LabError("capacity search: the start rate must be positive and at most the maximum")
    if not 0 < precision < 1:
        raise LabError("capacity search: precision is a share between 0 and 1 (e.g. 0.1)")
    cap = into or Capacity(variant, slo, None, None, False)

    def run(rate: float) -> Step:
        step = measure(rate)
        cap.steps.append(step)
        say(f"  {variant} @ {rate:.0f} req/s: {step.verdict} ({step.reason})")
        if step.verdict == "generator" or marginal(step, slo):
            # once more: a busy moment of the machine, or the limit? (a laptop runs other things)
            step = measure(rate)
            cap.steps.append(step)
            say(f"  {variant} @ {rate:.0f} req/s, again: {step.verdict} ({step.reason})")
        return step

    rate = start
    while True:  # step up
        step = run(rate)
        if step.verdict == "generator":
            cap.generator_bound = True
            return cap
        if not step.held:
            cap.high = rate
            break
        cap.low = rate
        if rate >= max_rate or len(cap.steps) >= max_steps:
            return cap
        rate = min(rate * 2, max_rate)
    if cap.low is None:  # the first rate broke: bisect down from it
        cap.low = 0.0
    while len(cap.steps) < max_steps and (
        cap.low == 0 or cap.high / cap.low - 1 > precision  # type: ignore[operator]
    ):
        rate = (cap.low + cap.high) / 2  # type: ignore[operator]
        if cap.low == 0 and rate < start / 8:
            break
        step = run(rate)
        if step.verdict == "generator":
            cap.generator_bound = True
            break
        if step.held:
            cap.low = rate
        else:
            cap.high = rate
    if cap.low == 0:
        cap.low = None
    return cap


def measure_host(
    host: str,
    mix: list[Endpoint],
    slo: SLO,
    out_dir: Path,
    *,
    label: str,
    duration: float = 8.0,
    warmup: float = 2.0,
    workers: int = 1,
    extra_config: dict | None = None,
    allow_remote: bool = False,
    ca_file: Path | None = None,
    settle: Callable[[], None] | None = None,
) -> Callable[[float], Step]:
    """A `measure(rate)` for `find_capacity`: one open-model load on `host` per call (through
    the lab's one launcher, samples kept in `out_dir`), judged against `slo`."""

    made: dict[float, int] = {}

    def measure(rate: float) -> Step:
        made[rate] = made.get(rate, 0) + 1  # a step measured again keeps both loads' samples
        name = f"{label}-{rate:g}rps" + (f"-{made[rate]}" if made[rate] > 1 else "")
        if settle is not None:
            settle()
        prof = LoadProfile(
            model="open",
            rate=rate,
            users=users_for(rate, slo),
            duration=duration,
            warmup=warmup,
            workers=workers,
            timeout=max(2.0, slo.limit_ms / 1000 * 20),
        )
        result = run_load(
            host,
            mix,
            prof,
            out_dir,
            label=name,
            extra_config=extra_config,
            allow_remote=allow_remote,
            ca_file=ca_file,
            progress=False,
        )
        if result.interrupted:
            raise KeyboardInterrupt
        log = result.locust_log.read_text(encoding="utf-8", errors="replace")
        return judge(result.samples, rate, slo, warmup, cpu_warning=CPU_WARNING in log)

    return measure


def steps_frame(results: list[Capacity]) -> pd.DataFrame:
    rows = [{"variant": c.variant, **asdict(s)} for c in results for s in c.steps]
    return pd.DataFrame(rows)


def summary_frame(results: list[Capacity]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "variant": c.variant,
                "sustained_rps": c.low,
                "broke_at_rps": c.high,
                "generator_bound": c.generator_bound,
                "steps": len(c.steps),
                "verdict": c.describe(),
            }
            for c in results
        ]
    )


def save(results: list[Capacity], folder: Path, **info: object) -> dict[str, Path]:
    """capacity-steps.csv (every load), capacity.csv (one row per variant), capacity.json and
    capacity.png (latency vs offered load, the knee marked) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "steps": folder / "capacity-steps.csv",
        "summary": folder / "capacity.csv",
        "json": folder / "capacity.json",
        "plot": folder / "capacity.png",
    }
    steps_frame(results).to_csv(out["steps"], index=False)
    summary_frame(results).to_csv(out["summary"], index=False)
    doc = {
        "slo": asdict(results[0].slo) if results else None,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **info,
        "variants": [
            {k: v for k, v in asdict(c).items() if k != "steps"} | {"verdict": c.describe()}
            for c in results
        ],
    }
    out["json"].write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    if results and any(c.steps for c in results):
        fig = plot(results)
        fig.savefig(out["plot"], bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
    return out


def plot(results: list[Capacity]) -> Figure:
    """Latency (the SLO's percentile) vs offered load per variant, on log axes; the SLO's limit
    dashed, each variant's sustained rate (the knee) marked; generator-bound steps hollow."""
    from perflab import plots

    plt = plots.plt
    fig, ax = plt.subplots(figsize=(9, 5.5))
    slo = results[0].slo
    for i, cap in enumerate(results):
        color = f"C{i}"
        steps = sorted(cap.steps, key=lambda s: s.rate)
        rates = [s.rate for s in steps]
        lat = [min(s.latency_ms, 1e6) for s in steps]
        ax.plot(rates, lat, "-", color=color, alpha=0.6)
        for s, y in zip(steps, lat, strict=True):
            hollow = s.verdict == "generator"
            ax.plot(s.rate, y, "o", color=color, mfc="white" if hollow else color)
        if cap.low:
            knee = next((s for s in steps if s.rate == cap.low), None)
            if knee is not None:
                ax.plot(knee.rate, knee.latency_ms, "*", ms=16, color=color, mec="black")
        label = f"{cap.variant}: " + (
            f">= {cap.low:.0f} req/s (generator-bound)"
            if cap.generator_bound and cap.low
            else f"{cap.low:.0f} req/s"
            if cap.low
            else "none held"
        )
        ax.plot([], [], "o-", color=color, label=label)
    ax.axhline(
        slo.limit_ms, ls="--", color="grey", label=f"SLO: p{slo.percentile:g} {slo.limit_ms:g} ms"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    plots._plain_log_axis(ax.xaxis)
    plots._plain_log_axis(ax.yaxis)
    ax.set_xlabel("offered load (requests/s, open model)")
    ax.set_ylabel(f"p{slo.percentile:g} latency (ms, from intended start)")
    ax.set_title("Capacity: latency vs offered load (star = highest rate within the SLO)")
    ax.legend(loc="upper left", fontsize=10)
    return fig


def run_capacity(
    exp: Experiment,
    slo: SLO,
    *,
    lab: Lab,
    start: float = 50.0,
    max_rate: float = 20_000.0,
    precision: float = 0.1,
    duration: float = 8.0,
    warmup: float = 2.0,
    workers: int = 1,
    echo: bool = True,
) -> tuple[Run, list[Capacity]]:
    """`find_capacity` for each variant of `exp`: one fresh service per variant (kept for all
    its steps), every step's samples in the run folder's raw/, the results beside them."""
    from perflab.loadgen import dataset_config
    from perflab.procs import http_ok
    from perflab.results import Run

    say: Callable[[str], None] = (lambda m: print(m, flush=True)) if echo else (lambda _m: None)
    run = Run.start(f"capacity-{exp.name}", slo=asdict(slo), workers=workers)
    dataset = dataset_config(lab.ensure_data())
    results: list[Capacity] = []
    info = {"experiment": exp.name, "run": run.path.name, "commit": run.manifest.get("git_commit")}
    try:
        for variant in exp.variants:
            say(f"[capacity {exp.name}] {variant.name}: {slo}")
            svc = lab.service(
                exp.service_for(variant),
                label=f"capacity-{variant.name}",
                log_dir=run.log_dir,
                **variant.settings,
            )
            healthy = http_ok(svc.url + "/healthz")

            def settle(ok: Callable[[], bool] = healthy) -> None:  # a backlog drained
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    with contextlib.suppress(Exception):
                        if ok():
                            return
                    time.sleep(0.2)

            try:
                measure = measure_host(
                    svc.url, exp.mix, slo, run.raw_dir, label=variant.name, duration=duration,
                    warmup=warmup, workers=workers, extra_config=dataset, ca_file=svc.ca_file,
                    settle=settle,
                )  # fmt: skip
                cap = Capacity(variant.name, slo, None, None, False)
                results.append(cap)
                find_capacity(
                    measure, slo, variant=variant.name, start=start, max_rate=max_rate,
                    precision=precision, say=say, into=cap,
                )  # fmt: skip
                say("  -> " + cap.describe())
            finally:
                svc.stop()
    finally:
        save(results, run.path, **info)
    return run, results
