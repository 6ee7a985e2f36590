"""Helpers for the harness tests: find what the lab started, run the CLI like CI does."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def processes_of(parent_pid: int) -> list[int]:
    """Live (not zombie) processes whose environment says `PERFLAB_PARENT_PID=parent_pid`."""
    found = []
    needle = f"PERFLAB_PARENT_PID={parent_pid}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state != "Z":
            found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, from /proc (children, grandchildren...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat[0] != "Z":
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [p for p in left if alive(p)]
    return left


def perflab_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """Run the `perflab` CLI in a subprocess (stderr not a TTY, as in CI)."""
    return subprocess.run(
        [sys.executable, "-m", "perflab.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def saved_run(stdout: str) -> Path:
    m = re.search(r"Saved to (\S+)", stdout)
    assert m, f"no 'Saved to' line in:\n{stdout}"
    return Path(m.group(1))


@dataclass
class Interrupted:
    """What `interrupt_run` saw: the CLI's exit code and output, its run folder, the processes
    it had started when it was interrupted."""

    returncode: int
    out: str
    err: str
    run_dir: Path
    tree: list[int]
    pid: int


def interrupt_run(args: list[str], database_url: str, tmp: Path, rows: int) -> Interrupted:
    """`perflab run ARGS` on the test database, results under `tmp`; Ctrl-C (SIGINT) once its
    first samples file holds more than `rows` requests."""
    results_dir = tmp / "results"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PERFLAB_RESULTS_DIR": str(results_dir),
        "PERFLAB_DATA_DIR": str(tmp / "data"),
    }
    argv = [sys.executable, "-m", "perflab.cli", "run", *args]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 60
        raw: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            raw = list(results_dir.glob("*/raw/samples-*.csv"))
            if raw and sum(1 for _ in raw[0].open()) > rows:
                break
            time.sleep(0.2)
        assert raw, "no samples were being recorded"
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Interrupted(proc.returncode, out, err, raw[0].parent.parent, tree, proc.pid)
