"""The scale curve: throughput and p95 as service workers and Locust workers grow, on one machine.

Adding uvicorn workers helps until something else runs out: the CPU cores (the service and the
load generator share them), the load generator (one Locust process sends a few thousand requests
a second), or what every worker waits for (the database). The curve alone does not say which;
so each point also records how much CPU the service's processes and the generator's processes
used (from /proc, sampled while the load runs), and names the bottleneck from that:

- the generator: a Locust process near one full core (Locust is single-threaded per process);
- the service: its processes near a full core per worker;
- the machine: service and generator together near every core of the machine, or other
  programs keeping the cores busy (a shared machine: then the curve measures the neighbours);
- otherwise a wait (the database, a lock, other load on the machine), not a CPU.

The knee is the first point after which the next step adds less than `KNEE_GAIN` throughput.
Linux only for the CPU columns (elsewhere they are empty and the bottleneck is not named).
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from perflab import stats
from perflab.loadgen import Endpoint, LoadProfile, dataset_config, run_load

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from perflab.lab import Lab
    from perflab.results import Run

__all__ = ["Point", "bottleneck", "knee", "plot", "run_scale"]

KNEE_GAIN = 0.10  # a step that adds less throughput than this share is past the knee
BUSY = 0.85  # a share of a core (or of the machine) that counts as saturated
MIX = [Endpoint("GET /products/{id}", "/products/{product}")]  # a cached read: CPU-bound
SETTINGS: dict[str, Any] = {"queries": "optimized", "cache": "memory", "rate_limit_enabled": False}
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Point:
    service_workers: int
    locust_workers: int
    users: int
    requests: int
    rps: float
    p50_ms: float
    p95_ms: float
    error_rate: float
    service_cpu: float  # cores used by the service's processes, on average over the load
    generator_cpu: float  # cores used by all Locust processes
    generator_cpu_max: float  # cores used by the busiest Locust process
    machine_cpu: float = 0.0  # cores busy machine-wide (ours and everything else's)
    bottleneck: str = ""


class _CpuMeter:
    """CPU seconds of this process's descendants, by role (service, generator), from /proc,
    snapshot at each tick; `cores` compares the last snapshot with one `window` s earlier (the
    load itself, not Locust's start-up)."""

    def __init__(self) -> None:
        self.history: list[tuple[float, dict[int, tuple[str, float]]]] = []
        self.machine: list[tuple[float, float]] = []  # (time, busy CPU seconds machine-wide)

    def tick(self) -> None:
        me = str(os.getpid())
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open("/proc/stat") as f:
                ticks = [int(v) for v in f.readline().split()[1:]]
            idle = ticks[3] + ticks[4]  # idle, iowait
            self.machine.append((time.monotonic(), (sum(ticks[:8]) - idle) / _TICK))
        children: dict[str, list[str]] = {}
        stats_of: dict[str, tuple[str, float]] = {}
        with contextlib.suppress(OSError):
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/stat", "rb") as f:
                        raw = f.read().decode(errors="replace")
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().decode(errors="replace")
                except OSError:
                    continue
                rest = raw[raw.rfind(")") + 2 :].split()
                children.setdefault(rest[1], []).append(pid)
                cpu = (int(rest[11]) + int(rest[12])) / _TICK
                role = "generator" if "locust" in cmd else "service" if "uvicorn" in cmd else ""
                stats_of[pid] = (role, cpu)
        seen: dict[int, tuple[str, float]] = {}
        stack = [(pid, "") for pid in children.get(me, [])]
        while (
            stack
        ):  # a uvicorn worker's command line is multiprocessing's: it has its parent's role
            pid, inherited = stack.pop()
            role, cpu = stats_of.get(pid, ("", 0.0))
            role = role or inherited
            stack.extend((child, role) for child in children.get(pid, []))
            if role:
                seen[int(pid)] = (role, cpu)
        self.history.append((time.monotonic(), seen))

    def machine_cores(self, window: float) -> float:
        """Cores busy machine-wide over the last `window` s of snapshots."""
        if len(self.machine) < 2:
            return 0.0
        t1, c1 = self.machine[-1]
        t0, c0 = next(((t, c) for t, c in reversed(self.machine) if t <= t1 - window),
                      self.machine[0])  # fmt: skip
        return (c1 - c0) / max(t1 - t0, 1e-9)

    def cores(self, window: float) -> tuple[float, float, float]:
        """(service, generator, busiest generator process), in cores over the last `window` s
        of snapshots."""

        # the last snapshot with every Locust process still running (they exit at the end, the
        # workers before their master)
        def count(snap: dict[int, tuple[str, float]]) -> int:
            return sum(r == "generator" for r, _c in snap.values())

        most = max((count(snap) for _t, snap in self.history), default=0)
        history = self.history
        while history and count(history[-1][1]) < most:
            history = history[:-1]
        if len(history) < 2:
            return 0.0, 0.0, 0.0
        t1, last = history[-1]
        t0, first = next(
            ((t, snap) for t, snap in reversed(history) if t <= t1 - window), history[0]
        )
        wall = max(t1 - t0, 1e-9)
        used = {pid: (r, (c - first.get(pid, (r, 0.0))[1]) / wall) for pid, (r, c) in last.items()}
        service = sum(c for r, c in used.values() if r == "service")
        gens = [c for r, c in used.values() if r == "generator"]
        return service, sum(gens), max(gens, default=0.0)


def bottleneck(p: Point, cores: int | None = None) -> str:
    """Which resource limited this point (see the module's docstring)."""
    cores = cores or os.cpu_count() or 1
    per_locust = p.generator_cpu_max
    if not (p.service_cpu or p.generator_cpu):
        return "unknown (no CPU readings)"
    if per_locust >= BUSY:
        return "load generator CPU"
    if p.service_cpu >= BUSY * p.service_workers:
        return "service CPU"
    ours = p.service_cpu + p.generator_cpu
    if p.machine_cpu >= BUSY * cores and ours < p.machine_cpu / 2:
        return (
            f"other load on the machine ({p.machine_cpu:.1f} of {cores} cores busy, "
            f"{ours:.2f} of them ours)"
        )
    if max(ours, p.machine_cpu) >= BUSY * cores:
        return "machine CPU (shared by service and generator)"
    return "waits (database, locks, or other load on the machine)"


def knee(points: list[Point]) -> int | None:
    """Index of the first point after which the next adds less than `KNEE_GAIN` throughput."""
    for i in range(len(points) - 1):
        if points[i + 1].rps < points[i].rps * (1 + KNEE_GAIN):
            return i
    return None


def measure_point(
    lab: Lab, run: Run, service_workers: int, locust_workers: int, users: int,
    duration: float, warmup: float, dataset: dict,
) -> Point:  # fmt: skip
    label = f"scale-s{service_workers}-l{locust_workers}-u{users}"
    svc = lab.service("catalog", label=label, log_dir=run.log_dir, workers=service_workers,
                      **SETTINGS)  # fmt: skip
    meter = _CpuMeter()
    try:
        prof = LoadProfile(model="closed", users=users, duration=duration, warmup=warmup,
                           workers=locust_workers)  # fmt: skip
        result = run_load(svc.url, MIX, prof, run.raw_dir, label=label, progress=False,
                          extra_config=dataset_config(dataset), on_tick=meter.tick)  # fmt: skip
    finally:
        svc.stop()
    service, generator, busiest = meter.cores(window=duration - warmup)
    m = stats.measured(result.samples, warmup)
    lat = m["latency_ms"].to_numpy(dtype=float)
    ok = m["ok"].astype(bool).to_numpy()
    point = Point(
        service_workers, locust_workers, users, len(m),
        float(ok.sum() / stats.window_seconds(m)) if len(m) else 0.0,
        float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        float(np.percentile(lat, 95)) if len(lat) else float("nan"),
        float((~ok).mean()) if len(ok) else 1.0,
        round(service, 3), round(generator, 3), round(busiest, 3),
        round(meter.machine_cores(duration - warmup), 3),
    )  # fmt: skip
    point.bottleneck = bottleneck(point)
    return point


def run_scale(
    lab: Lab,
    *,
    service_workers: list[int],
    locust_workers: list[int],
    users: int = 32,
    duration: float = 12.0,
    warmup: float = 3.0,
    echo: bool = True,
) -> tuple[Run, list[Point]]:
    """Every (service workers, Locust workers) pair under the same closed-model load on a cached
    read; the table and the plot saved in a run folder (scale.csv, scale.png)."""
    from perflab.results import Run

    run = Run.start("scale", users=users, duration=duration, warmup=warmup)
    dataset = lab.ensure_data()
    points: list[Point] = []
    try:
        for lw in locust_workers:
            for sw in service_workers:
                p = measure_point(lab, run, sw, lw, users, duration, warmup, dataset)
                points.append(p)
                if echo:
                    print(
                        f"  service workers {sw}, Locust workers {lw}: {p.rps:.0f} req/s, "
                        f"p95 {p.p95_ms:.1f} ms; CPU service {p.service_cpu:.2f}, generator "
                        f"{p.generator_cpu:.2f} cores -> {p.bottleneck}",
                        flush=True,
                    )
    finally:
        pd.DataFrame([asdict(p) for p in points]).to_csv(run.path / "scale.csv", index=False)
        if points:
            fig = plot(points, run.manifest)
            fig.savefig(run.path / "scale.png", bbox_inches="tight")
            from perflab import plots

            plots.plt.close(fig)
    return run, points


def plot(points: list[Point], manifest: dict | None = None) -> Figure:
    """Throughput (left) and p95 (right) against service workers, one line per Locust worker
    count; the knee of each line starred, each point labelled with its bottleneck."""
    from perflab import plots

    plt = plots.plt
    fig, (ax_rps, ax_p95) = plt.subplots(1, 2, figsize=(13, 5.5))
    frame = pd.DataFrame([asdict(p) for p in points])
    short = {"load generator CPU": "gen", "service CPU": "svc", "machine CPU": "cpu",
             "other load": "other"}  # fmt: skip
    for i, lw in enumerate(sorted({p.locust_workers for p in points})):
        g = frame[frame["locust_workers"] == lw].sort_values("service_workers")
        color = f"C{i}"
        ax_rps.plot(g["service_workers"], g["rps"], "o-", color=color,
                    label=f"{lw} Locust worker{'s' if lw > 1 else ''}")  # fmt: skip
        ax_p95.plot(g["service_workers"], g["p95_ms"], "o-", color=color)
        for _, row in g.iterrows():
            tag = next((v for k, v in short.items() if row["bottleneck"].startswith(k)), "wait")
            ax_rps.annotate(tag, (row["service_workers"], row["rps"]), textcoords="offset points",
                            xytext=(6, -12), fontsize=9, color=color)  # fmt: skip
        line = [p for p in points if p.locust_workers == lw]
        line.sort(key=lambda p: p.service_workers)
        k = knee(line)
        if k is not None:
            ax_rps.plot(line[k].service_workers, line[k].rps, "*", ms=18, color=color,
                        mec="black")  # fmt: skip
    workers = sorted(frame["service_workers"].unique())
    for ax in (ax_rps, ax_p95):
        ax.set_xticks(workers)
        ax.set_xlabel("uvicorn worker processes (catalog, cached read)")
    ax_rps.set_ylabel("throughput (successful requests/s)")
    ax_rps.set_ylim(bottom=0)
    ax_p95.set_ylabel("p95 latency (ms)")
    ax_p95.set_ylim(bottom=0)
    ax_rps.legend(loc="lower right", fontsize=10)
    ax_rps.set_title("Throughput (star: knee; label: bottleneck)")
    ax_p95.set_title(f"p95 latency, closed model, {points[0].users} users")
    if manifest:
        where = (
            f"{str(manifest.get('started_at', ''))[:16]} UTC, commit "
            f"{str(manifest.get('git_commit') or '?')[:10]}, {manifest.get('cpu_count')} CPUs"
        )
        fig.suptitle(f"Scale curve on one machine ({where})", fontsize=12)
    fig.tight_layout()
    return fig
