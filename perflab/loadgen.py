"""Run Locust as a subprocess and collect every request it made.

Locust is never imported here: in a Jupyter kernel its gevent monkey-patching hangs the kernel.
The harness writes the traffic mix and the load model to `PERFLAB_LOAD`, starts
`python -m locust -f loadtests/lab.py --headless`, follows the samples file for a live progress
line, and reads the samples back when Locust exits (or when the user interrupts: what was
recorded up to then is kept).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from perflab import paths
from perflab.errors import LabError
from perflab.procs import ManagedProcess, free_port, spawn
from perflab.recorder import COLUMNS as SAMPLE_COLUMNS


@dataclass
class LoadProfile:
    """How much load, and of which kind.

    `duration` is rounded up to whole seconds (Locust's --run-time takes no fractions).
    closed: `users` clients, each sending its next request `think_time` after the last answer
    (Locust's own model; slows down when the service does). open: requests *arrive* at `rate`
    per second whatever the service does; `users` only caps concurrency.
    """

    model: Literal["closed", "open"] = "closed"
    users: int = 10
    rate: float | None = None
    arrival: Literal["constant", "poisson"] = "constant"
    duration: float = 10.0
    warmup: float = 2.0
    spawn_rate: float | None = None
    think_time: tuple[float, float] | None = None
    workers: int = 1
    timeout: float = 30.0
    seed: int = 1

    def validate(self) -> None:
        if self.model not in ("closed", "open"):
            raise LabError(f"unknown load model {self.model!r}: use 'closed' or 'open'")
        if self.model == "open" and not (self.rate and self.rate > 0):
            raise LabError("the open model needs a positive --rate (requests per second)")
        if self.users < 1:
            raise LabError("users must be at least 1")
        if self.duration <= 0:
            raise LabError("duration must be positive")
        if self.warmup < 0 or self.warmup >= self.duration:
            raise LabError("warmup must be at least 0 and shorter than the duration")
        if self.workers < 1:
            raise LabError("workers must be at least 1")


@dataclass
class Endpoint:
    """One kind of request in the mix. `path` may hold {product}, {category}, {offset}."""

    name: str
    path: str
    method: str = "GET"
    weight: float = 1.0
    json: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    samples: pd.DataFrame
    returncode: int | None
    interrupted: bool
    locust_log: Path
    started_at: float
    ended_at: float


def check_target(host: str, allow_remote: bool = False) -> None:
    """Only loopback targets unless asked: a classroom tool must not become a DoS cannon."""
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LabError(f"target {host!r} is not an http(s) URL like http://127.0.0.1:8000")
    if allow_remote:
        return
    try:
        addrs = {str(ai[4][0]) for ai in socket.getaddrinfo(parts.hostname, None)}
    except socket.gaierror:
        raise LabError(f"cannot resolve {parts.hostname!r}") from None
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        raise LabError(
            f"{host} is not a loopback address; perflab loads only this machine unless you "
            "pass --allow-remote (and own the target)"
        )


def read_samples(path: Path) -> pd.DataFrame:
    """Read the samples CSV(s) one run wrote: one per Locust process when distributed."""
    files = [p for p in [path, *sorted(path.parent.glob(path.name + ".*"))] if p.exists()]
    frames = []
    for f in files:
        with contextlib.suppress(pd.errors.EmptyDataError):
            frames.append(
                pd.read_csv(
                    f, dtype={"x_cache": "string", "request_id": "string"}, on_bad_lines="skip"
                )
            )
    if not frames:
        return pd.DataFrame(columns=SAMPLE_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    df["x_cache"] = df["x_cache"].fillna("")
    df["ok"] = df["ok"].astype(bool)
    return df.sort_values("t_intended", ignore_index=True)


def interactive() -> bool:
    """True in a terminal or a Jupyter kernel: where a live progress bar redraws in place.

    Elsewhere (CI logs, pipes) a bar that redraws twice a second becomes hundreds of lines.
    """
    if sys.stderr.isatty():
        return True
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    with contextlib.suppress(Exception):
        ip = shell.get_ipython()
        return ip is not None and "IPKernelApp" in ip.config
    return False


def done_line(label: str, samples: pd.DataFrame, seconds: float) -> str:
    """One line per load, for logs: how many requests, how fast, how slow."""
    n = len(samples)
    if n == 0:
        return f"{label}: no requests recorded in {seconds:.1f} s"
    failed = int((~samples["ok"].astype(bool)).sum())
    p95 = float(np.percentile(samples["latency_ms"], 95))
    return (
        f"{label}: {n} requests in {seconds:.1f} s ({n / max(seconds, 1e-9):.0f} req/s), "
        f"{failed} failed, p95 {p95:.1f} ms (warm-up included)"
    )


class _Progress:
    """Follows the samples file and shows requests/s and p95 of the last seconds (tqdm).

    Only where a bar redraws in place (`interactive()`); elsewhere `run_load` prints one line
    when the load ends.
    """

    def __init__(self, path: Path, total: float, label: str, enabled: bool) -> None:
        self.path = path
        self.offset = 0
        self.window: list[tuple[float, float]] = []
        self.bar = None
        if enabled and interactive():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=round(total), desc=label, unit="s", leave=False)
        self.t0 = time.monotonic()

    def update(self) -> None:
        if self.bar is None or not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self.offset += end + 1
        now = time.time()
        for line in chunk[:end].splitlines():
            parts = line.split(b",")
            with contextlib.suppress(ValueError, IndexError):
                self.window.append((float(parts[1]), float(parts[2])))
        self.window = [w for w in self.window if w[0] > now - 5]
        recent = [w for w in self.window if w[0] > now - 1]
        p95 = np.percentile([w[1] for w in self.window], 95) if self.window else float("nan")
        self.bar.n = min(self.bar.total or 0, round(time.monotonic() - self.t0))
        self.bar.set_postfix_str(f"{len(recent)} req/s, p95 {p95:.1f} ms")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def load_config(
    mix: list[Endpoint],
    profile: LoadProfile,
    samples_path: Path,
    extra_config: dict | None = None,
) -> dict:
    """What loadtests/lab.py reads from `PERFLAB_LOAD`: the mix, the load model, where to record.

    Shared by headless runs (`run_load`) and the web UI (`perflab.webui`), so both send the
    same traffic.
    """
    return {
        "model": profile.model,
        "rate": profile.rate,
        "arrival": profile.arrival,
        "think_time": list(profile.think_time) if profile.think_time else None,
        "timeout": profile.timeout,
        "seed": profile.seed,
        "workers": profile.workers,
        "samples": str(samples_path),
        "mix": [{k: v for k, v in asdict(e).items() if v is not None} for e in mix],
        **(extra_config or {}),
    }


def dataset_config(dataset: dict) -> dict:
    """The dataset's shape, so generated ids ({product}, {category}) exist in the database."""
    return {
        "products": int(dataset.get("products", 1000)),
        "categories": int(dataset.get("categories", 10)),
    }


def locust_env(config: dict) -> dict[str, str]:
    """The environment a Locust subprocess running loadtests/lab.py needs."""
    return {"PERFLAB_LOAD": json.dumps(config), "PYTHONUNBUFFERED": "1"}


def run_load(
    host: str,
    mix: list[Endpoint],
    profile: LoadProfile,
    out_dir: Path,
    *,
    label: str = "load",
    extra_config: dict | None = None,
    locustfile: Path | None = None,
    allow_remote: bool = False,
    progress: bool = True,
    on_tick: Callable[[], None] | None = None,
    ca_file: Path | None = None,
) -> LoadResult:
    """Run one Locust load against `host`; returns every recorded request.

    An https `host` works as is (Locust does not verify certificates by default); give the
    service's `ca_file` to have every connection verified against it.
    """
    profile.validate()
    check_target(host, allow_remote)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples_path = out_dir / f"samples-{label}.csv"
    for old in [samples_path, *samples_path.parent.glob(samples_path.name + ".*")]:
        old.unlink(missing_ok=True)
    config = load_config(mix, profile, samples_path, extra_config)
    if ca_file:
        config["ca_file"] = str(ca_file)
    env = locust_env(config)
    users = profile.users
    spawn_rate = profile.spawn_rate or (users if profile.model == "open" else max(users, 1))
    common = ["-f", str(locustfile or paths.LOADTESTS / "lab.py")]
    log = out_dir / f"locust-{label}.log"
    argv = [
        sys.executable,
        "-m",
        "locust",
        *common,
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",  # Locust takes whole seconds only
        f"{math.ceil(profile.duration)}s",
        "--host",
        host,
        "--only-summary",
        "--stop-timeout",
        "3",
        "--loglevel",
        "WARNING",
        "--csv",
        str(out_dir / f"locust-{label}"),
        "--exit-code-on-error",
        "0",
    ]
    procs: list[ManagedProcess] = []
    if profile.workers > 1:
        argv += [
            "--master",
            "--expect-workers",
            str(profile.workers),
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(free_port()),
        ]
        master_port = argv[-1]
    procs.append(spawn("locust", argv, env=env, output=log, cwd=paths.ROOT))
    if profile.workers > 1:
        for i in range(profile.workers):
            procs.append(
                spawn(
                    f"locust-worker-{i}",
                    [
                        sys.executable,
                        "-m",
                        "locust",
                        *common,
                        "--worker",
                        "--master-host",
                        "127.0.0.1",
                        "--master-port",
                        master_port,
                        "--loglevel",
                        "WARNING",
                    ],
                    env=env,
                    output=out_dir / f"locust-{label}-worker{i}.log",
                    cwd=paths.ROOT,
                )
            )
    started = time.time()
    bar = _Progress(samples_path, profile.duration, label, progress)
    interrupted = False
    deadline = time.monotonic() + profile.duration + 60
    try:
        while procs[0].alive():
            if time.monotonic() > deadline:
                procs[0].stop(sig=signal.SIGINT)
                break
            time.sleep(0.5)
            bar.update()
            if on_tick is not None:
                on_tick()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for p in procs:
            p.stop(timeout=8, sig=signal.SIGTERM)
        bar.close()
    ended = time.time()
    samples = read_samples(samples_path)
    if progress:
        print(done_line(label, samples, ended - started), file=sys.stderr, flush=True)
    if samples.empty and not interrupted:
        raise LabError(
            f"Locust recorded no requests against {host}.\n"
            f"Last lines of {log}:\n{procs[0].output_tail()}"
        )
    return LoadResult(samples, procs[0].popen.returncode, interrupted, log, started, ended)
