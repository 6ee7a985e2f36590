"""Run Locust as a subprocess and collect every request it made.

Locust is never imported here: in a Jupyter kernel its gevent monkey-patching hangs the kernel.
`locust_command` is the one place that builds Locust's command line (headless runs here, the
web UI in `perflab.webui`, the bench's plain-Locust reference); `run_load` starts
`python -m locust -f loadtests/lab.py --headless` (or your locustfile beside the recorder
plugin) with the mix and the load model as the locustfile's options (`perflab.traffic.
LabOptions`), follows the samples file for a live progress line, and reads the samples back when
Locust exits (or when the user interrupts: what was recorded up to then is kept).

Each load leaves in its folder the raw samples (`samples-LABEL.csv`, one file per worker when
distributed), the mix it sent (`mix-LABEL.json`), Locust's log, its CSV statistics
(`locust-LABEL_stats.csv`, `_stats_history.csv`, `_failures.csv`, `_exceptions.csv`) and its
HTML report (`locust-LABEL.html`).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from perflab import experiments, paths
from perflab.errors import LabError
from perflab.loopback import CheckedTarget, check_target
from perflab.procs import ManagedProcess, free_port, spawn
from perflab.recorder import COLUMNS as SAMPLE_COLUMNS
from perflab.traffic import Endpoint, LabOptions, LoadProfile, mix_json

__all__ = [
    "CheckedTarget",
    "Endpoint",
    "LoadProfile",
    "LoadResult",
    "LocustSpec",
    "check_target",
    "dataset_config",
    "locust_command",
    "read_samples",
    "run_load",
]

LAB_LOCUSTFILE = paths.LOADTESTS / "lab.py"
# Beside a locustfile of yours: imports the recorder plugin (perflab.locust_plugin).
RECORDER_LOCUSTFILE = paths.LOADTESTS / "perflab_recorder.py"
STOP_TIMEOUT = 3  # seconds Locust lets running requests finish when the run time is up
DEFAULT_MASTER_PORT = 5557  # Locust's own default
WAIT_FOR_WORKERS = 120  # seconds a master waits for its workers to connect, then gives up


@dataclass
class LocustSpec:
    """One Locust process tree, as `locust_command` turns it into command lines.

    `run_time` set: headless, that many seconds (rounded up: Locust takes whole seconds);
    None: the web UI on `web_port`, started from the page. `files`: Locust's own statistics as
    `<files>_stats.csv` etc. and its HTML report as `<files>.html`. `samples`: every request
    recorded there by the recorder plugin (added beside `locustfile`). `options`: the
    locustfile's own custom options. `workers > 1`: a master on `master_port` and N workers.
    `external_workers`: more workers the master waits for, started elsewhere (`perflab worker
    --master HOST:PORT`, on any machine that reaches `master_bind`); their samples reach the
    master over Locust's own connection (`perflab.locust_plugin`).
    """

    locustfile: Path
    host: str
    users: int
    spawn_rate: float
    run_time: float | None = None
    web_port: int | None = None
    files: Path | None = None
    samples: Path | None = None
    host_header: str | None = None
    options: list[str] = field(default_factory=list)
    workers: int = 1
    master_port: int | None = None
    external_workers: int = 0
    master_bind: str = "127.0.0.1"  # where the master listens for its workers
    master_host: str = "127.0.0.1"  # where a worker finds the master

    @property
    def local_workers(self) -> int:
        return self.workers if self.workers > 1 else 0

    @property
    def distributed(self) -> bool:
        return self.local_workers + self.external_workers > 0


def locust_command(spec: LocustSpec, worker: bool = False) -> list[str]:
    """The command line of the master (or only) Locust process, or of one of its workers."""
    files = [str(spec.locustfile)]
    if spec.samples is not None or spec.host_header or worker:
        files.append(str(RECORDER_LOCUSTFILE))
    argv = [sys.executable, "-m", "locust", "-f", ",".join(files), *spec.options]
    if spec.samples is not None:
        argv += ["--perflab-samples", str(spec.samples)]
    if spec.host_header:
        argv += ["--perflab-host-header", spec.host_header]
    if worker:
        port = str(spec.master_port)
        return [*argv, "--worker", "--master-host", spec.master_host, "--master-port", port]
    argv += ["--host", spec.host, "--users", str(spec.users)]
    argv += ["--spawn-rate", f"{spec.spawn_rate:g}", "--stop-timeout", str(STOP_TIMEOUT)]
    if spec.run_time is not None:
        argv += ["--headless", "--run-time", f"{math.ceil(spec.run_time)}s", "--only-summary"]
        argv += ["--loglevel", "WARNING", "--exit-code-on-error", "0"]
    else:
        argv += ["--web-host", "127.0.0.1", "--web-port", str(spec.web_port or free_port())]
    if spec.files is not None:
        argv += ["--csv", str(spec.files), "--html", str(spec.files) + ".html"]
    if spec.distributed:
        expect = spec.local_workers + spec.external_workers
        argv += ["--master", "--expect-workers", str(expect)]
        argv += ["--expect-workers-max-wait", str(WAIT_FOR_WORKERS)]
        argv += [
            "--master-bind-host",
            spec.master_bind,
            "--master-bind-port",
            str(spec.master_port),
        ]
    return argv


def start_locust(spec: LocustSpec, log: Path) -> list[ManagedProcess]:
    """Start the master (or only) process and its workers, all through `spawn` (they die with
    the lab); worker i logs beside `log` as `<log stem>-worker<i>.log`. The master is first."""
    if spec.distributed and spec.master_port is None:
        spec.master_port = free_port()
    env = {"PYTHONUNBUFFERED": "1"}
    procs = [spawn("locust", locust_command(spec), env=env, output=log)]
    for i in range(spec.local_workers):
        argv, out = locust_command(spec, worker=True), log.with_name(f"{log.stem}-worker{i}.log")
        procs.append(spawn(f"locust-worker-{i}", argv, env=env, output=out))
    return procs


def lab_options(
    mix: list[Endpoint] | str, profile: LoadProfile, mix_file: Path, extra: dict | None = None
) -> LabOptions:
    """The lab locustfile's options for this mix and load model. A list of endpoints goes to
    `mix_file` (`--mix @file`): an endpoint's headers may hold a token, and a command line is
    public to every local user; a string is a `--mix` as typed (`caching`, `/healthz`).
    `extra`: more `LabOptions` fields (the dataset's `products`, `categories`...)."""
    known = {f.name for f in fields(LabOptions)}
    if unknown := set(extra or {}) - known:
        raise LabError(
            f"unknown option(s) for the lab's locustfile: {', '.join(sorted(unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )
    if isinstance(mix, str):
        experiments.mix(mix)  # a bad one fails here, not in Locust
        spec = mix
    else:
        if not mix:
            raise LabError("the traffic mix is empty: give at least one Endpoint")
        mix_file.parent.mkdir(parents=True, exist_ok=True)
        mix_file.write_text(mix_json(mix) + "\n", encoding="utf-8")
        spec = f"@{mix_file}"
    base = asdict(LabOptions(mix=spec).for_profile(profile))
    return LabOptions.parse({**base, **(extra or {})})  # values of any type, checked


@dataclass
class LoadResult:
    samples: pd.DataFrame
    returncode: int | None
    interrupted: bool
    locust_log: Path
    started_at: float
    ended_at: float
    # distributed: per worker, what it sent and whether it went silent (`*.workers.json`)
    workers: list[dict] = field(default_factory=list)


def read_samples(path: Path) -> pd.DataFrame:
    """Read the samples CSV one load wrote (distributed: the master's, every worker's samples)."""
    files = [path] if path.exists() else []
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


def dataset_config(dataset: dict) -> dict:
    """The dataset's shape, so generated ids ({product}, {category}) exist in the database."""
    return {
        "products": int(dataset.get("products", 1000)),
        "categories": int(dataset.get("categories", 10)),
    }


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

    `mix` and `profile` drive the lab's locustfile; `extra_config` sets more of its options
    (`LabOptions`: `products`, `categories`, `seed`...). A `locustfile` of yours runs instead,
    unchanged, beside the recorder plugin: its own tasks and `wait_time` set the traffic, so
    only the closed model's `users` apply. An https `host` works as is (Locust does not verify
    certificates by default); give the service's `ca_file` to have every connection verified
    against it.
    """
    profile.validate()
    target = check_target(host, allow_remote)
    own = locustfile is not None and Path(locustfile).resolve() != LAB_LOCUSTFILE.resolve()
    if own and profile.model == "open":
        raise LabError(
            "the open model (--rate) needs the lab's locustfile (--path); your locustfile's "
            "wait_time sets its own pace"
        )
    if own and (extra_config or ca_file):
        raise LabError("extra_config and ca_file set the lab's locustfile, not yours")
    out_dir.mkdir(parents=True, exist_ok=True)
    samples_path = out_dir / f"samples-{label}.csv"
    workers_path = samples_path.with_suffix(".workers.json")
    for old in [samples_path, workers_path]:
        old.unlink(missing_ok=True)
    options: list[str] = []
    if not own:
        extra = {**(extra_config or {}), **({"ca_file": str(ca_file)} if ca_file else {})}
        options = lab_options(mix, profile, out_dir / f"mix-{label}.json", extra).argv()
    spec = LocustSpec(
        locustfile=Path(locustfile) if own else LAB_LOCUSTFILE,  # type: ignore[arg-type]
        host=target.url,
        host_header=target.host_header,
        users=profile.users,
        spawn_rate=profile.spawn_rate or profile.users,
        run_time=profile.duration,
        files=out_dir / f"locust-{label}",
        samples=samples_path,
        options=options,
        workers=profile.workers,
        external_workers=profile.external_workers,
    )
    if profile.master_bind:
        spec.master_bind, spec.master_port = split_host_port(profile.master_bind)
    log = out_dir / f"locust-{label}.log"
    procs = start_locust(spec, log)
    if spec.external_workers:
        print(
            f"{label}: waiting for {spec.external_workers} Locust worker(s): run `perflab worker "
            f"--master {spec.master_bind}:{spec.master_port}` on each load machine",
            file=sys.stderr,
            flush=True,
        )
    started = time.time()
    bar = _Progress(samples_path, profile.duration, label, progress)
    interrupted = False
    deadline = time.monotonic() + profile.duration + 60
    if spec.external_workers:
        deadline += WAIT_FOR_WORKERS
    try:
        while procs[0].alive():
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
            bar.update()
            if on_tick is not None:
                on_tick()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # SIGINT: Locust stops as on Ctrl-C, writing its HTML report and the last samples.
        procs[0].stop(timeout=8, sig=signal.SIGINT)
        for p in procs[1:]:
            p.stop(timeout=8, sig=signal.SIGTERM)
        bar.close()
    ended = time.time()
    samples = read_samples(samples_path)
    workers = read_workers(workers_path)
    for w in workers:
        if w.get("silent"):
            print(
                f"{label}: worker {w['worker']} went silent after sending {w['samples']} samples "
                "(died, or lost the network): the run keeps what arrived",
                file=sys.stderr,
                flush=True,
            )
    if progress:
        print(done_line(label, samples, ended - started), file=sys.stderr, flush=True)
    if samples.empty and not interrupted:
        raise LabError(
            f"Locust recorded no requests against {host}.\n"
            f"Last lines of {log}:\n{procs[0].output_tail()}"
        )
    return LoadResult(samples, procs[0].popen.returncode, interrupted, log, started, ended, workers)


def read_workers(path: Path) -> list[dict]:
    """The master's per-worker report (`perflab.locust_plugin`), [] when not distributed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def split_host_port(text: str, default_port: int = DEFAULT_MASTER_PORT) -> tuple[str, int]:
    """`HOST:PORT`, `HOST` or `[v6]:PORT` -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or "]" in port:
        host, port = text.strip(), str(default_port)
    host = host.strip("[]")
    if not host:
        raise LabError(f"{text!r}: give HOST:PORT, e.g. 10.0.0.5:5557")
    try:
        number = int(port)
    except ValueError:
        raise LabError(f"{text!r}: the port is not a number") from None
    if not 0 < number < 65536:
        raise LabError(f"{text!r}: the port is 1-65535")
    return host, number
