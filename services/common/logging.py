"""structlog set up for one canonical JSON line per request.

Each service writes to its own file (the lab collects it into the run folder) or to stdout.
Logging can be switched off to measure what it costs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TextIO

import structlog


class _Null:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def make_logger(service: str, log_file: str | None, enabled: bool = True) -> Any:
    """Return a bound structlog logger writing JSON lines, or a no-op one when disabled."""
    if not enabled:
        return _Null()
    stream: TextIO
    if log_file:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = path.open("a", buffering=1, encoding="utf-8")
    else:
        stream = sys.stdout
    logger = structlog.wrap_logger(
        structlog.WriteLogger(stream),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        cache_logger_on_first_use=True,
    )
    # pid: with several uvicorn workers, which process answered.
    return logger.bind(service=service, pid=os.getpid())
