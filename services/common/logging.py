"""structlog set up for one canonical JSON line per request.

Each service writes to its own file (the lab collects it into the run folder) or to stdout.
Logging can be switched off to measure what it costs.

The line is written on every request, so it is built the way structlog's performance notes
advise: a filtering bound logger (a disabled level is a no-op method), the logger cached on
first use, orjson rendering straight to bytes and a bytes logger that writes each line with one
unbuffered `write` (no text encoding step, no buffer to lose if the process is killed).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger

from perflab_services.common import context

# What services pass around: `logger.info("event", key=value, ...)`; every level method exists.
Logger = FilteringBoundLogger


def _drop(*_args: Any, **_kw: Any) -> None:
    return None


class _Off:
    """What `make_logger` returns when logging is off: every call (and `bind`) does nothing."""

    def bind(self, **_kw: Any) -> _Off:
        return self

    def __getattr__(self, _name: str) -> Any:
        return _drop


def _add_request_id(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """Every line written while a request is served names it, not only the request line: a
    rate-limiter refusal, a breaker opening, a cache error (and its trace, when traced)."""
    if "request_id" not in event:
        ctx = context.get()
        if ctx is not None:
            event["request_id"] = ctx.request_id
            if "trace_id" in ctx.extra:
                event["trace_id"] = ctx.extra["trace_id"]
                event["span_id"] = ctx.extra["span_id"]
    return event


def make_logger(service: str, log_file: str | None, enabled: bool = True) -> Logger:
    """Return a bound structlog logger writing JSON lines, or a no-op one when disabled."""
    if not enabled:
        return cast(Logger, _Off())
    stream: BinaryIO
    if log_file:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = path.open("ab", buffering=0)
    else:
        stream = sys.stdout.buffer
    logger = structlog.wrap_logger(
        structlog.BytesLogger(stream),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        processors=[
            _add_request_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        cache_logger_on_first_use=True,
    )
    # pid: with several uvicorn workers, which process answered.
    return logger.bind(service=service, pid=os.getpid())
