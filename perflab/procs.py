"""Child processes that never outlive the lab.

Every service, Redis and Locust process the lab starts goes through `spawn`:
- on Linux the kernel sends it SIGKILL when the lab dies, even by SIGKILL (PR_SET_PDEATHSIG, set
  by util-linux's `setpriv --pdeathsig KILL`, which then execs the command);
- it gets `PERFLAB_PARENT_PID`, which our services and locustfiles watch, so grandchildren
  (uvicorn workers, Locust workers) follow too, and platforms without PDEATHSIG are covered;
- it runs in its own process group (`process_group=0`), so a Ctrl-C in a notebook reaches the lab
  first and the lab stops children in order (load first, then services) and keeps what was
  measured;
- it runs in the lab's data folder (`perflab.paths.workdir`) unless told otherwise;
- an `atexit` hook stops whatever is still running when the interpreter exits normally.

No `preexec_fn`: Python code between fork and exec is not safe while other threads run (the
metrics scraper, a notebook's), so both settings are made without it: the process group by
`subprocess` itself, the death signal by a tiny exec wrapper.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

import httpx

from perflab import paths
from perflab.errors import LabError

_live: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


@functools.cache
def death_signal_prefix() -> tuple[str, ...]:
    """The command that makes the kernel SIGKILL what it execs when the lab dies, or () where
    there is none (macOS; a Linux without util-linux >= 2.33, where the children's
    PERFLAB_PARENT_PID watch remains)."""
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    if setpriv is None:
        return ()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = [setpriv, "--pdeathsig", "KILL", "--", "true"]
        if subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0:
            return (setpriv, "--pdeathsig", "KILL", "--")
    return ()


@functools.cache
def _env_default_signal() -> str | None:
    """`env`, where it can reset a signal to its default before it execs (coreutils >= 8.31)."""
    exe = shutil.which("env") if sys.platform.startswith("linux") else None
    if exe is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        probe = [exe, "--default-signal=INT", "true"]
        if subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode == 0:
            return exe
    return None


def sigint_prefix() -> tuple[str, ...]:
    """What gives a child back the default Ctrl-C when the lab itself was started ignoring it.

    A program started in the background by a script (`perflab run … &`, `nohup`, `make test &`)
    ignores SIGINT, and an ignored signal stays ignored across exec: every child would inherit
    it, and Locust, which the lab stops with SIGINT so that it writes its last statistics and
    report, would ignore the stop and be killed without them."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return ()
    exe = _env_default_signal()
    return (exe, "--default-signal=INT") if exe else ()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


class ManagedProcess:
    """A child process with its output in a file, stoppable politely then firmly."""

    def __init__(self, name: str, popen: subprocess.Popen, output: Path | None) -> None:
        self.name = name
        self.popen = popen
        self.output = output
        _live.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
        """Signal the whole process group, wait, then SIGKILL whatever is left."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        # Reap stragglers of the group (workers) even after the leader exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        _live.discard(self)
        return self.popen.returncode

    def output_tail(self, lines: int = 20) -> str:
        return tail(self.output, lines)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    output: Path | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start `argv` as a child that dies with the lab (module docstring), its stdout and stderr
    appended to `output`, in `cwd` (default: the lab's data folder)."""
    full_env = {**os.environ, **(env or {}), "PERFLAB_PARENT_PID": str(os.getpid())}
    out: int | BinaryIO = subprocess.DEVNULL
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        out = output.open("ab")
    try:
        if shutil.which(argv[0]) is None:
            raise LabError(f"cannot start {name}: {argv[0]} not found")
        popen = subprocess.Popen(
            [*death_signal_prefix(), *sigint_prefix(), *argv],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd or paths.workdir(),
            process_group=0,
        )
    except FileNotFoundError as exc:
        raise LabError(f"cannot start {name}: {exc.filename} not found") from None
    finally:
        if not isinstance(out, int):
            out.close()
    return ManagedProcess(name, popen, output)


def wait_until(check: Callable[[], bool], proc: ManagedProcess, timeout: float, what: str) -> None:
    """Poll `check` until true; fail fast (with the child's last log lines) if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise LabError(
                f"{proc.name} exited with code {proc.popen.returncode} before {what}.\n"
                f"Last lines of its log ({proc.output}):\n{proc.output_tail()}"
            )
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    proc.stop()
    raise LabError(
        f"{proc.name} did not become ready ({what}) within {timeout:.0f} s.\n"
        f"Last lines of its log ({proc.output}):\n{proc.output_tail()}"
    )


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        return httpx.get(url, timeout=1.0).status_code == 200

    return check


@atexit.register
def stop_all() -> None:
    """Stop every child still running (normal interpreter exit, or an explicit clean-up)."""
    for proc in list(_live):
        with contextlib.suppress(Exception):
            proc.stop(timeout=3)
