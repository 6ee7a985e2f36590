"""In-process profiling for when the lab's profiler cannot attach from outside.

The lab profiles services with py-spy from another process (`perflab.profiling`). Where the
operating system forbids that (macOS without sudo, containers without ptrace), a service
started with `PERFLAB_PROFILE_DIR` set can profile itself with pyinstrument instead: SIGUSR1
starts a profiler on the event loop thread, SIGUSR2 stops it and writes
`<dir>/pyinstrument-<pid>.speedscope.json`. A `.pyinstrument-<pid>.ready` file tells the lab the
hook is there. Without the variable nothing is installed and nothing is imported.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

PROFILE_DIR_ENV = "PERFLAB_PROFILE_DIR"
INTERVAL_SECONDS = 0.01  # 100 Hz, as py-spy samples


def install_from_env() -> bool:
    """Install the SIGUSR1/SIGUSR2 hook when `PERFLAB_PROFILE_DIR` is set; True if installed."""
    raw = os.environ.get(PROFILE_DIR_ENV)
    usr1 = getattr(signal, "SIGUSR1", None)
    usr2 = getattr(signal, "SIGUSR2", None)
    if not raw or usr1 is None or usr2 is None:
        return False
    if threading.current_thread() is not threading.main_thread():
        return False  # signal handlers can only be set from the main thread
    folder = Path(raw)
    folder.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {}

    def start(_sig: int, _frame: object) -> None:
        from pyinstrument import Profiler

        if state.get("profiler") is None:
            # async_mode disabled: the real stack of the loop thread, as py-spy would see it.
            state["profiler"] = Profiler(interval=INTERVAL_SECONDS, async_mode="disabled")
            state["profiler"].start()

    def stop(_sig: int, _frame: object) -> None:
        from pyinstrument.renderers import SpeedscopeRenderer

        profiler = state.pop("profiler", None)
        if profiler is None:
            return
        session = profiler.stop()
        out = folder / f"pyinstrument-{os.getpid()}.speedscope.json"
        tmp = out.with_suffix(".tmp")
        tmp.write_text(SpeedscopeRenderer().render(session))
        os.replace(tmp, out)  # the lab waits for this name: never let it see half a file

    signal.signal(usr1, start)
    signal.signal(usr2, stop)
    (folder / f".pyinstrument-{os.getpid()}.ready").write_text("")
    return True
