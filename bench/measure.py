"""Building blocks of the benchmarks: targets, a reference client, loads, process-tree memory.

Everything here starts real processes through `perflab.procs.spawn`, so nothing outlives the
bench, and measures with the lab's own code path (`perflab.loadgen.run_load`) wherever the lab
is the thing being measured.
"""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import psutil

from perflab import paths, stats, targets
from perflab.loadgen import Endpoint, LoadProfile, LocustSpec, locust_command, run_load
from perflab.procs import spawn


def start_target(mode: str, log_dir: Path, **opts: float) -> targets.Target:
    """The lab's known-latency server (`perflab.targets`), in the benchmark's terms.

    sleep: `delay_ms` per request; two-speed: `delay_ms`, but every `slow_every`-th request
    `slow_ms`; instant: no delay; stall: frozen `stall_s` every `period_s` (no delay otherwise,
    so the analytic truth is the stall alone).
    """
    if mode == "sleep":
        return targets.start_target("sleep", opts.get("delay_ms", 20.0), log_dir=log_dir)
    if mode == "two-speed":
        return targets.start_target(
            "sleep",
            opts["delay_ms"],
            slow_every=int(opts["slow_every"]),
            slow_ms=opts["slow_ms"],
            log_dir=log_dir,
        )
    if mode == "instant":
        return targets.start_target("fast", 0.0, log_dir=log_dir)
    if mode == "stall":
        return targets.start_target(
            "stall", 0.0, stall_every=opts["period_s"], stall_s=opts["stall_s"], log_dir=log_dir
        )
    raise ValueError(f"unknown target mode {mode!r}")


def sequential_client(url: str, path: str, seconds: float, warmup: float = 0.2) -> np.ndarray:
    """The truth: one keep-alive `http.client` connection, one request at a time, perf_counter.

    Nothing between the clock and the socket but the standard library, so what it measures is
    the server's latency plus the least client cost Python allows.
    """
    parts = urlsplit(url)
    assert parts.hostname, f"no host in {url}"
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    out: list[float] = []
    t_begin = time.perf_counter()
    t_end = t_begin + warmup + seconds
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                break
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            t1 = time.perf_counter()
            if t0 - t_begin >= warmup:
                out.append((t1 - t0) * 1000)
    finally:
        conn.close()
    return np.asarray(out)


@dataclass
class Load:
    """One load run: measured samples (warm-up dropped) and Locust's own summary row."""

    samples: pd.DataFrame
    locust: dict
    label: str
    locust_requests: int | None = None  # from Locust's final summary

    @property
    def rps(self) -> float:
        ok = int(self.samples["ok"].sum())
        return ok / stats.window_seconds(self.samples) if ok else 0.0

    def pct(self, p: float, column: str = "latency_ms") -> float:
        return float(np.percentile(self.samples[column].to_numpy(dtype=float), p))

    @property
    def errors(self) -> int:
        return int((~self.samples["ok"]).sum())


def read_locust_stats(out_dir: Path, label: str) -> dict:
    """Locust's Aggregated row from its --csv stats (its percentiles are rounded buckets)."""
    path = out_dir / f"locust-{label}_stats.csv"
    if not path.exists():
        return {}
    df = pd.read_csv(path)
    agg = df[df["Name"] == "Aggregated"]
    return agg.iloc[0].to_dict() if not agg.empty else {}


def locust_final_count(log: Path) -> int | None:
    """Requests in Locust's end-of-run summary (the Aggregated line of its first table).

    Its --csv stats file is rewritten only every second, so it can miss the last second of a
    run (or, for a run of a second or two, hold nothing at all): throughput is taken from the
    summary Locust prints when it stops.
    """
    if not log.exists():
        return None
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) > 1 and parts[0] == "Aggregated" and parts[1].isdigit():
            return int(parts[1])
    return None


def lab_load(
    url: str,
    path: str,
    out_dir: Path,
    label: str,
    *,
    users: int,
    duration: float,
    warmup: float,
    workers: int = 1,
    model: str = "closed",
    rate: float | None = None,
    extra: dict | None = None,
) -> Load:
    """A load through the lab's own runner (raw samples on)."""
    prof = LoadProfile(
        model=model,  # type: ignore[arg-type]
        users=users,
        rate=rate,
        duration=duration,
        warmup=warmup,
        workers=workers,
    )
    res = run_load(
        url,
        [Endpoint(f"GET {path}", path)],
        prof,
        out_dir,
        label=label,
        progress=False,
        extra_config=extra,
    )
    return Load(
        stats.measured(res.samples, warmup),
        read_locust_stats(out_dir, label),
        label,
        locust_final_count(res.locust_log),
    )


def bare_locust(
    url: str, path: str, out_dir: Path, label: str, *, users: int, duration: float
) -> int | None:
    """Plain `locust` CLI, headless, with a textbook locustfile; returns its request count.

    The same command line as the lab's loads (`locust_command`), without the recorder plugin.
    """
    spec = LocustSpec(
        Path(__file__).with_name("locustfile_bare.py"),
        url,
        users=users,
        spawn_rate=users,
        run_time=duration,
        files=out_dir / f"locust-{label}",
    )
    log = out_dir / f"{label}.log"
    argv = locust_command(spec)
    proc = spawn(label, argv, env={"BENCH_PATH": path}, output=log, cwd=paths.ROOT)
    try:
        proc.popen.wait(duration + 60)
    except subprocess.TimeoutExpired:
        pass
    finally:
        proc.stop()
    return locust_final_count(log)


# --- wrk: throughput from outside -------------------------------------------------------------
def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def wrk_rps(url: str, seconds: float, log: Path, connections: int = 8) -> float:
    """Requests/s of non-error answers measured by wrk (one thread, keep-alive connections).

    Faster than any Python client, so a fast endpoint is measured, not the load generator:
    one Locust process tops out near 5-8k req/s on our machines, a bare FastAPI endpoint is
    about there. NaN if wrk saw non-2xx answers (they are not the endpoint being measured).
    """
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url]
    run_measured(argv, log, timeout=seconds + 30)
    text = log.read_text(errors="replace")
    last = text.rsplit("Running ", 1)[-1]  # the log is appended to: this run's part
    m = re.search(r"Requests/sec:\s+([\d.]+)", last)
    if m is None or "Non-2xx" in last:
        return float("nan")
    return float(m.group(1))


# --- memory of a process tree ----------------------------------------------------------------
def tree_rss(root: int) -> int:
    """Resident memory of `root` and all its descendants, in bytes (psutil: Linux and macOS
    alike). A process that exits while it is read counts as nothing."""
    try:
        parent = psutil.Process(root)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


@dataclass
class CommandRun:
    returncode: int | None
    seconds: float
    peak_rss: int
    timed_out: bool
    log: Path


def run_measured(
    argv: list[str], log: Path, timeout: float, env: dict[str, str] | None = None
) -> CommandRun:
    """Run a command to completion; wall time and the peak RSS summed over its process tree.

    The tree is sampled from /proc five times a second: `getrusage(RUSAGE_CHILDREN)` would only
    give the largest single process, and a lab run is a tree (CLI, uvicorn, Locust, Redis).
    """
    proc = spawn(argv[0], argv, env=env, output=log, cwd=paths.ROOT)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            if sys.platform.startswith("linux"):
                peak = max(peak, tree_rss(proc.pid))
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    sampler.start()
    timed_out = False
    try:
        proc.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        seconds = time.perf_counter() - t0
        stop.set()
        sampler.join()
        proc.stop()
    return CommandRun(proc.popen.returncode, seconds, peak, timed_out, log)
