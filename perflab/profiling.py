"""Where the time goes: a sampling profiler attached to service processes while load runs.

A load test says *how fast*; a profile says *why*. Sampling from outside is the least intrusive
way to get one: py-spy reads the interpreter's stacks from another process a hundred times a
second, without any change to the service (`make bench` measures what it costs). It reads them
without pausing the service (`--nonblocking`): py-spy's default stops the process for each
sample, and on a memory-cache hit under wrk that cost about a quarter of the throughput (0.76x
with pauses, about 1.0x without, interleaved 4 s runs on a busy machine, 2026-11-30). The price
is that a stack read while the interpreter changes it is now and then wrong; over thousands of
samples that is noise in a table of percentages, not a different answer.

Where py-spy cannot attach (macOS without sudo, a container without ptrace), the service
profiles itself with pyinstrument, started and stopped by signals, if it was started with
`self_profile_env(folder)` in its environment (see `perflab_services.common.profiler`); the
`note` of each profile says in one line which tool was used.

```
with profiling.profile(profiling.service_pids(svc.proc.pid), run_dir / "profiles") as session:
    run the load
for p in session.profiles:
    print(p.note)
    print(profiling.table(p.speedscope))
```

Each process gets `<label>-<pid>.speedscope.json` (open it at speedscope.app), a flame graph
`<label>-<pid>.svg` and `<label>-<pid>.meta.json` (tool, rate, wall seconds). Percentages in
the tables are of the profiled wall time of one thread: 100% is one core kept busy the whole
time, so a service whose event loop idles half the time shows about 50% busy plus `idle`.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from perflab.procs import ManagedProcess, spawn

FOLDER = "profiles"  # a run folder's profiles (`perflab run --profile`)
DEFAULT_RATE = 100  # samples per second: py-spy's own default, a few per cent of overhead
PROFILE_DIR_ENV = "PERFLAB_PROFILE_DIR"  # shared with perflab_services.common.profiler
Tool = Literal["py-spy", "pyinstrument", "none"]

GROUPS = (
    "framework",
    "middleware",
    "logging",
    "metrics",
    "database",
    "cache",
    "JSON",
    "our code",
    "other",
)

# Leaf frames of a thread that waits (a thread pool worker with no work, a sleeping
# watchdog): not time spent on anything. The event loop waiting for sockets is different: it
# is the `idle` row, the wall time the main thread was not seen busy.
_WAITING = {
    "Condition.wait",
    "Event.wait",
    "Queue.get",
    "SimpleQueue.get",
    "Thread.join",
    "_wait_for_tstate_lock",
    "select",
    "poll",
    "EpollSelector.select",
    "KqueueSelector.select",
    # The services' log flusher (common/logging.py) between batches: in `time.sleep`, which has
    # no frame of its own; its writes show as `LineWriter.flush`.
    "LineWriter._run",
}


# Threads of the lab's own that sleep between checks (py-spy does not always see them idle).
_IGNORED_THREADS = ("perflab-parent-watchdog",)


# --- finding the processes ---------------------------------------------------------------------
def service_pids(pid: int) -> list[int]:
    """The processes that answer requests: uvicorn's workers, or `pid` itself with one worker.

    `uvicorn --workers N` runs a supervisor whose children are the workers (and, on some
    platforms, multiprocessing's resource tracker, which answers nothing).
    """
    children = []
    for child in _children(pid):
        cmdline = _cmdline(child)
        if "resource_tracker" not in cmdline:
            children.append(child)
    return sorted(children) or [pid]


def _children(pid: int) -> list[int]:
    proc = Path("/proc")
    if proc.is_dir():
        out = []
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_bytes()
            except OSError:
                continue
            if int(raw[raw.rfind(b")") + 2 :].split()[1]) == pid:
                out.append(int(entry.name))
        return out
    pgrep = shutil.which("pgrep")
    if pgrep is None:
        return []
    done = subprocess.run([pgrep, "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(x) for x in done.stdout.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def py_spy_executable() -> str | None:
    """py-spy next to this interpreter (the venv's wheel) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def self_profile_env(folder: Path) -> dict[str, str]:
    """The environment variable that lets a service profile itself into `folder` (the
    pyinstrument fallback, where py-spy cannot attach). Not `perflab.lab.service_env`, which
    turns a variant's settings into a service's environment."""
    return {PROFILE_DIR_ENV: str(Path(folder).resolve())}


# --- recording ---------------------------------------------------------------------------------
@dataclass
class ProcessProfile:
    """What was recorded for one process, and with what."""

    pid: int
    label: str
    tool: Tool
    rate: int
    seconds: float = 0.0
    speedscope: Path | None = None
    svg: Path | None = None
    note: str = ""


@dataclass
class _Recording:
    profile: ProcessProfile
    proc: ManagedProcess | None = None  # py-spy
    started: float = 0.0


@dataclass
class ProfileSession:
    """Profiles `pids` from `__enter__` to `__exit__`; `profiles` holds the results after."""

    pids: Sequence[int]
    folder: Path
    label: str = "service"
    rate: int = DEFAULT_RATE
    attach_timeout: float = 10.0
    profiles: list[ProcessProfile] = field(default_factory=list)
    _recordings: list[_Recording] = field(default_factory=list, repr=False)

    def __enter__(self) -> ProfileSession:
        self.folder.mkdir(parents=True, exist_ok=True)
        for pid in self.pids:
            self._recordings.append(self._start(pid))
        return self

    def __exit__(self, *exc: object) -> None:
        for rec in self._recordings:
            self._finish(rec)
        self.profiles = [rec.profile for rec in self._recordings]

    @property
    def summary(self) -> str:
        return "\n".join(p.note for p in self.profiles)

    def _stem(self, pid: int) -> Path:
        return self.folder / f"{self.label}-{pid}"

    def _start(self, pid: int) -> _Recording:
        out = Path(f"{self._stem(pid)}.speedscope.json")
        prof = ProcessProfile(pid, self.label, "none", self.rate)
        why = "py-spy is not installed"
        exe = py_spy_executable()
        if exe is not None:
            out.unlink(missing_ok=True)
            log = Path(f"{self._stem(pid)}.py-spy.log")
            log.unlink(missing_ok=True)
            argv = [exe, "record", "--pid", str(pid), "--rate", str(self.rate), "--function"]
            argv += ["--nonblocking", "--format", "speedscope", "--output", str(out)]
            proc = spawn(f"py-spy {pid}", argv, output=log)
            attached = self._wait_attached(proc, log)
            if attached:
                prof.tool = "py-spy"
                return _Recording(prof, proc, time.monotonic())
            proc.stop()
            why = "py-spy could not attach: " + _last_line(log)
        if self._signal_in_process(pid, signal_name="SIGUSR1"):
            prof.tool = "pyinstrument"
            return _Recording(prof, None, time.monotonic())
        prof.note = f"{self.label} pid {pid}: not profiled ({why}; no in-process fallback)"
        return _Recording(prof)

    def _wait_attached(self, proc: ManagedProcess, log: Path) -> bool:
        """py-spy prints 'Sampling process ...' once it reads the target's stacks."""
        deadline = time.monotonic() + self.attach_timeout
        while time.monotonic() < deadline:
            if log.exists() and "Sampling process" in log.read_text(errors="replace"):
                return True
            if not proc.alive():
                return False
            time.sleep(0.02)
        return False

    def _signal_in_process(self, pid: int, signal_name: str) -> bool:
        """Ask a service started with `self_profile_env(folder)` to start/stop pyinstrument."""
        sig = getattr(signal, signal_name, None)
        ready = self.folder / f".pyinstrument-{pid}.ready"
        if sig is None or not ready.exists():
            return False
        try:
            os.kill(pid, sig)
        except OSError:
            return False
        return True

    def _finish(self, rec: _Recording) -> None:
        prof = rec.profile
        if prof.tool == "none":
            return
        prof.seconds = round(time.monotonic() - rec.started, 3)
        out = Path(f"{self._stem(prof.pid)}.speedscope.json")
        if rec.proc is not None:
            rec.proc.stop(timeout=30, sig=signal.SIGINT)  # py-spy writes its file on Ctrl-C
            how = f"py-spy from outside ({prof.rate} Hz, all threads, non-blocking)"
        else:
            written = self.folder / f"pyinstrument-{prof.pid}.speedscope.json"
            written.unlink(missing_ok=True)
            self._signal_in_process(prof.pid, "SIGUSR2")
            deadline = time.monotonic() + 30
            while not written.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if written.exists():
                os.replace(written, out)
            how = "pyinstrument in the process (py-spy could not attach; event loop thread only)"
        if not out.exists() or out.stat().st_size == 0:
            prof.note = f"{self.label} pid {prof.pid}: {prof.tool} wrote no profile"
            return
        prof.speedscope = out
        Path(f"{self._stem(prof.pid)}.meta.json").write_text(
            json.dumps({"tool": prof.tool, "rate": prof.rate, "seconds": prof.seconds}) + "\n"
        )
        prof.svg = flamegraph(out, Path(f"{self._stem(prof.pid)}.svg"))
        prof.note = f"{self.label} pid {prof.pid}: profiled {prof.seconds:.1f} s with {how}"


def profile(
    pids: Iterable[int], folder: Path, *, label: str = "service", rate: int = DEFAULT_RATE
) -> ProfileSession:
    """A context manager that profiles `pids` while its block runs (see the module docstring)."""
    return ProfileSession(list(pids), Path(folder), label=label, rate=rate)


def _last_line(log: Path) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1].strip()[:200] if lines else "no output"


# --- profiles of a run ---------------------------------------------------------------------------
def entry(p: ProcessProfile, root: Path, **tags: object) -> dict[str, object]:
    """A profile as the run's manifest lists it: tags, tool, note, files relative to `root`."""

    def rel(f: Path | None) -> str | None:
        return str(f.relative_to(root)) if f is not None else None

    return {
        **tags,
        "pid": p.pid,
        "tool": p.tool,
        "seconds": p.seconds,
        "note": p.note,
        "speedscope": rel(p.speedscope),
        "svg": rel(p.svg),
    }


def run_profiles(run_path: Path, manifest: dict) -> list[dict]:
    """The profiles a run recorded (`perflab run --profile`), files as absolute paths."""
    out = []
    for e in manifest.get("profiles") or []:
        paths = {k: Path(run_path) / e[k] if e.get(k) else None for k in ("speedscope", "svg")}
        out.append({**e, **paths})
    return out


def describe(run_path: Path, manifest: dict, top: int = 15) -> str:
    """Where the time goes in each profiled variant, as text (the CLI prints it)."""
    blocks = []
    for e in run_profiles(run_path, manifest):
        head = f"Where the time goes: {e['experiment']}/{e['variant']} (repeat {e['repeat'] + 1})"
        lines = [head, f"  {e['note']}"]
        if e["speedscope"] is not None and e["speedscope"].exists():
            grouped = groups(e["speedscope"]).sort_values("self_pct", ascending=False)
            lines.append(
                "  by group (self % of wall time): "
                + ", ".join(f"{g} {v:.1f}" for g, v in grouped.itertuples(index=False) if v)
            )
            shown = table(e["speedscope"], top)
            with pd.option_context("display.width", 200, "display.max_colwidth", 60):
                text = shown.to_string(index=False, float_format=lambda v: f"{v:.1f}")
            lines.extend("  " + line for line in text.splitlines())
            lines.append(f"  flame graph: {e['svg']}  speedscope: {e['speedscope']}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


# --- reading a speedscope file -----------------------------------------------------------------
@dataclass(frozen=True)
class Frame:
    name: str
    file: str


@dataclass
class Samples:
    """Weighted stacks (root first) per thread, and the wall seconds they cover."""

    stacks: list[tuple[str, tuple[Frame, ...], float]]  # (thread, stack, seconds)
    wall: float
    main_thread: str | None


def load(path: Path) -> Samples:
    """Read a speedscope file written by py-spy (sampled) or pyinstrument (evented)."""
    doc = json.loads(Path(path).read_text())
    frames = [Frame(f.get("name", "?"), f.get("file") or "") for f in doc["shared"]["frames"]]
    stacks: list[tuple[str, tuple[Frame, ...], float]] = []
    spans: list[float] = []
    for prof in doc["profiles"]:
        thread = prof.get("name", "")
        if prof["type"] == "sampled":
            scale = _unit_seconds(prof.get("unit", "seconds"))
            for sample, weight in zip(prof["samples"], prof["weights"], strict=True):
                stacks.append((thread, tuple(frames[i] for i in sample), weight * scale))
            spans.append(sum(prof["weights"]) * scale)
        else:
            stacks.extend(_evented(prof, frames, thread))
            spans.append((prof["endValue"] - prof["startValue"]) * _unit_seconds(prof["unit"]))
    # The wall time profiled (from the sidecar the session writes), or at least the busiest
    # thread's sampled time: py-spy's samples can add up to a little more than the clock said.
    wall = max(spans, default=0.0)
    meta = Path(str(path).removesuffix(".speedscope.json") + ".meta.json")
    if meta.exists():
        wall = max(wall, float(json.loads(meta.read_text()).get("seconds") or 0.0))
    names = [p.get("name", "") for p in doc["profiles"]]
    main = next((n for n in names if "MainThread" in n), names[0] if len(names) == 1 else None)
    return Samples(stacks, wall, main)


def _unit_seconds(unit: str) -> float:
    return {"seconds": 1.0, "milliseconds": 1e-3, "microseconds": 1e-6, "nanoseconds": 1e-9}.get(
        unit, 1.0
    )


def _evented(prof: dict, frames: list[Frame], thread: str) -> Iterator[tuple]:
    scale = _unit_seconds(prof.get("unit", "seconds"))
    stack: list[Frame] = []
    last = prof["startValue"]
    for ev in prof["events"]:
        if stack and ev["at"] > last:
            yield thread, tuple(stack), (ev["at"] - last) * scale
        last = ev["at"]
        if ev["type"] == "O":
            stack.append(frames[ev["frame"]])
        elif stack:
            stack.pop()


# --- where the time goes -----------------------------------------------------------------------
_THIRD_PARTY = (
    ("structlog", "logging"),
    ("/logging/", "logging"),
    ("prometheus_client", "metrics"),
    ("sqlalchemy", "database"),
    ("sqlite3", "database"),
    ("psycopg", "database"),
    ("redis", "cache"),
    ("orjson", "JSON"),
    ("/json/", "JSON"),
    ("pydantic", "JSON"),
    ("fastapi/encoders", "JSON"),
    ("starlette/middleware", "middleware"),
    ("fastapi", "framework"),
    ("starlette", "framework"),
    ("uvicorn", "framework"),
    ("anyio", "framework"),
    ("asyncio", "framework"),
    ("uvloop", "framework"),
    ("httptools", "framework"),
    ("h11", "framework"),
    ("concurrent/futures", "framework"),
    ("threading.py", "framework"),
    ("contextlib.py", "framework"),
)
_OURS = (
    ("common/middleware", "middleware"),
    ("core/protection", "middleware"),
    ("core/ratelimit", "middleware"),
    ("core/limits", "middleware"),
    ("common/limits", "middleware"),
    ("core/faults", "middleware"),
    ("core/asgi", "middleware"),
    ("common/asgi", "middleware"),
    ("common/logging", "logging"),
    ("common/metrics", "metrics"),
    ("core/cache", "cache"),
    ("core/db", "database"),
    ("catalog/repository", "database"),
)


def _is_ours(frame: Frame) -> bool:
    path = frame.file.replace("\\", "/")
    return "perflab_services" in path or "/services/" in path or "/perflab/" in path


def group_of(frame: Frame) -> str:
    """framework / middleware / logging / metrics / database / cache / JSON / our code / other."""
    path = frame.file.replace("\\", "/")
    if _is_ours(frame):
        for part, group in _OURS:
            if part in path:
                return group
        return "our code"
    for part, group in _THIRD_PARTY:
        if part in path:
            return group
    return "other"


def _is_waiting(thread: str, stack: tuple[Frame, ...]) -> bool:
    if any(name in thread for name in _IGNORED_THREADS):
        return True
    return bool(stack) and stack[-1].name in _WAITING


def _short(file: str) -> str:
    """A readable location: the path from the package folder on."""
    path = file.replace("\\", "/")
    if "site-packages/" in path:
        return path.rsplit("site-packages/", 1)[1]
    if "/perflab_services/" in path:
        return "perflab_services/" + path.rsplit("/perflab_services/", 1)[1]
    if "/services/" in path:
        return "perflab_services/" + path.rsplit("/services/", 1)[1]
    if "/perflab/" in path:
        return "perflab/" + path.rsplit("/perflab/", 1)[1]
    stdlib = re.search(r"/lib/python3[.\d]*/(.+)", path)
    return stdlib.group(1) if stdlib else (Path(path).name or path)


def table(path: Path, top: int = 15, *, ours: bool = False) -> pd.DataFrame:
    """The functions where the time goes: self and total % of the profiled wall time, top N.

    `self_pct`: samples with the function on top of the stack (its own code and the C calls it
    makes); `total_pct`: samples with it anywhere on the stack (counted once per sample). Rows
    are sorted by self time; waiting threads (an idle thread pool) are left out. `ours`: only
    the lab's own functions (the services' and perflab's), the ones a student can change.
    """
    s = load(path)
    self_t: defaultdict[Frame, float] = defaultdict(float)
    total_t: defaultdict[Frame, float] = defaultdict(float)
    for thread, stack, w in s.stacks:
        if not stack or _is_waiting(thread, stack):
            continue
        self_t[stack[-1]] += w
        for frame in set(stack):
            total_t[frame] += w
    wall = s.wall or 1.0
    rows = [
        {
            "function": f.name,
            "where": _short(f.file),
            "group": group_of(f),
            "self_pct": 100 * t / wall,
            "total_pct": 100 * total_t[f] / wall,
        }
        for f, t in sorted(self_t.items(), key=lambda kv: kv[1], reverse=True)
        if not ours or _is_ours(f)
    ][:top]
    columns = ["function", "where", "group", "self_pct", "total_pct"]
    return pd.DataFrame(rows, columns=columns)


def groups(path: Path) -> pd.DataFrame:
    """Self time by group, plus `idle`: wall time the main (event loop) thread was not busy."""
    s = load(path)
    by: dict[str, float] = defaultdict(float)
    main_busy = 0.0
    for thread, stack, w in s.stacks:
        if not stack or _is_waiting(thread, stack):
            continue
        by[group_of(stack[-1])] += w
        if thread == s.main_thread:
            main_busy += w
    wall = s.wall or 1.0
    rows = [{"group": g, "self_pct": 100 * by.get(g, 0.0) / wall} for g in GROUPS]
    if s.main_thread is not None:
        idle = max(0.0, wall - main_busy)
        rows.append({"group": "idle (event loop waiting)", "self_pct": 100 * idle / wall})
    return pd.DataFrame(rows, columns=["group", "self_pct"])


def definition(function: str, where: str) -> tuple[str, str]:
    """The module and qualified name of the definition a table row (`function`, `where`)
    points at, to show its source: `show_file(source_path(module), qualname)`
    (`perflab.classroom.show`), read from the file the service runs.

    A function defined inside another (`A.__call__.<locals>.send_wrapper`) points at the
    function it is defined in. Only the lab's own modules (`perflab_services/...`, `perflab/...`).
    """
    if not where.endswith(".py") or not where.startswith(("perflab_services/", "perflab/")):
        raise ValueError(f"{where}: not one of the lab's own modules")
    return where.removesuffix(".py").replace("/", "."), function.split(".<locals>.", 1)[0]


def markdown(df: pd.DataFrame) -> str:
    """A table as Markdown (for bench/results and reports), percentages to one decimal."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [f"{v:.1f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


# --- flame graph ---------------------------------------------------------------------------------
_COLOURS = {
    "framework": "#9ecae1",
    "middleware": "#fdae6b",
    "logging": "#fdd0a2",
    "metrics": "#c7e9c0",
    "database": "#fc9272",
    "cache": "#bcbddc",
    "JSON": "#fee391",
    "our code": "#74c476",
    "other": "#d9d9d9",
}


def flamegraph(path: Path, svg: Path, width: int = 1200, row: int = 17) -> Path:
    """Write a flame graph of a speedscope profile as a standalone SVG (hover: the numbers).

    Widths are shares of all busy samples across threads (root at the bottom, callees above);
    colours are the groups of the table.
    """
    s = load(path)
    tree: dict = {"n": 0.0, "kids": {}}
    for thread, stack, w in s.stacks:
        if not stack or _is_waiting(thread, stack):
            continue
        node = tree
        node["n"] += w
        for frame in (Frame(thread.split('"')[1] if '"' in thread else thread, ""), *stack):
            node = node["kids"].setdefault(frame, {"n": 0.0, "kids": {}})
            node["n"] += w
    total = tree["n"] or 1.0
    depth = _depth(tree)
    height = (depth + 2) * row
    rects: list[str] = []

    def draw(node: dict, x: float, level: int) -> None:
        for frame, kid in sorted(node["kids"].items(), key=lambda kv: -kv[1]["n"]):
            w = kid["n"] / total * width
            if w >= 0.3:
                y = height - (level + 2) * row
                group = group_of(frame) if frame.file else "framework"
                label = f"{frame.name} ({_short(frame.file)})" if frame.file else frame.name
                tip = html.escape(f"{label}: {100 * kid['n'] / total:.1f}% of busy samples")
                text = html.escape(_fit(frame.name, w))
                rects.append(
                    f'<g><title>{tip}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" '
                    f'height="{row - 1}" fill="{_COLOURS[group]}"/>'
                    + (f'<text x="{x + 3:.1f}" y="{y + row - 5}">{text}</text>' if text else "")
                    + "</g>"
                )
                draw(kid, x, level + 1)
            x += w

    draw(tree, 0.0, 0)
    legend = " ".join(f"{g}" for g in _COLOURS)
    svg.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">'
        f'<text x="4" y="13">{html.escape(Path(path).name)}: {total:.2f} s busy in '
        f"{s.wall:.2f} s wall; colours: {html.escape(legend)}</text>" + "".join(rects) + "</svg>\n"
    )
    return svg


def _depth(node: dict) -> int:
    return 1 + max((_depth(k) for k in node["kids"].values()), default=0)


def _fit(name: str, width: float) -> str:
    chars = int(width // 7)
    if chars < 3:
        return ""
    return name if len(name) <= chars else name[: chars - 1] + "…"
