"""Make a service die with the lab that started it, whatever killed the lab.

The lab sets `PERFLAB_PARENT_PID` when it starts a service. On Linux the lab also asks the
kernel to kill its direct children (PR_SET_PDEATHSIG), but uvicorn's worker processes and
anything started by a child are grandchildren, which that does not reach. This thread checks
the lab's pid twice a second and ends the process when it is gone, in every worker.
"""

from __future__ import annotations

import os
import signal
import threading
import time


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_parent_watchdog(interval: float = 0.5) -> threading.Thread | None:
    raw = os.environ.get("PERFLAB_PARENT_PID")
    if not raw or not raw.isdigit():
        return None
    pid = int(raw)

    def watch() -> None:
        while True:
            if not _alive(pid) or os.getppid() == 1:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(3)
                os._exit(1)
            time.sleep(interval)

    thread = threading.Thread(target=watch, name="perflab-parent-watchdog", daemon=True)
    thread.start()
    return thread
