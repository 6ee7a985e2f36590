"""One canonical JSON line per request, and the services' other log lines, written cheaply.

Each service writes to its own file (the lab collects it into the run folder) or to stdout.
Logging can be switched off to measure what it costs.

The request line is written on every request, so it costs as little as a line can
(bench/results/hotpath.md, round 3, measured each step):

- `JsonLogger`: a line is one dict (the bound fields, the call's own fields, `event`, `level`,
  `timestamp`, and the id of the request being served) serialised by orjson straight to bytes,
  newline and RFC 3339 time included. No processor chain: with structlog's (filtering bound
  logger, three processors, orjson renderer) a line cost 7.7 µs of CPU in a loop, against 5.4
  µs for this one written line by line and 2.8 µs batched.
- `LineWriter`: by default each line is written as the request ends, with one `write` (the
  services' `log_flush_seconds` setting is 0): a student tailing the file, a notebook reading it
  right after a request and a check waiting for a request's line all see it at once, and a
  `kill -9` loses nothing. With `log_flush_seconds` > 0 lines are written in batches: a line
  joins a buffer, and a flusher thread writes the buffer with one `write` at most that long
  after its first line, so a busy service makes one system call per hundreds of lines. Under
  wrk that saved about 5 µs of CPU per request, within the noise (hotpath.md, round 3): not
  worth lines that arrive late by default. Lines are never split, so workers appending to one
  file never interleave inside a line. A buffer is also written when it passes
  `MAX_BUFFERED_BYTES`, at the end of the services' lifespan (uvicorn's clean shutdown) and at
  exit: a clean stop loses nothing; a `kill -9` loses at most the last interval of lines.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

from perflab_services.common import context

# How long a line may wait in the buffer (0: not at all, the default), and how much may wait
# before it is written at once.
FLUSH_SECONDS = 0.0
MAX_BUFFERED_BYTES = 64 * 1024


def _drop(*_args: Any, **_kw: Any) -> None:
    return None


class _Off:
    """What `make_logger` returns when logging is off: every call (and `bind`) does nothing."""

    def bind(self, **_kw: Any) -> _Off:
        return self

    def __getattr__(self, _name: str) -> Any:
        return _drop


class LineWriter:
    """Where rendered lines go: buffers whole lines, writes them in batches.

    `msg` appends a line; a daemon thread, woken by the first line into an empty buffer, waits
    `interval` s for more and writes them all with one `write`. So the request path pays a lock
    and a copy into a bytearray, and an idle service no wake-up at all. The
    buffer's lock is never held during a write (the event loop never waits on the disk); a
    second lock keeps the batches in order.
    """

    def __init__(self, stream: BinaryIO, interval: float = FLUSH_SECONDS) -> None:
        self._stream = stream
        self._interval = interval
        self._buffer = bytearray()
        self._lock = threading.Lock()  # the buffer
        self._io_lock = threading.Lock()  # the stream: one batch at a time, in order
        self._pending = threading.Event()
        self._thread: threading.Thread | None = None
        atexit.register(self.flush)

    def msg(self, line: bytes) -> None:
        with self._lock:
            first = not self._buffer
            self._buffer += line  # copied: the line's own bytes are freed at once
            full = len(self._buffer) >= MAX_BUFFERED_BYTES or not self._interval
        if full:
            self.flush()
        elif first:  # later lines find the flusher already due
            if self._thread is None:
                self._start()
            self._pending.set()

    def flush(self) -> None:
        """Write every buffered line now (at exit, and for whoever must read the file now)."""
        with self._io_lock:
            with self._lock:
                self._pending.clear()
                if not self._buffer:
                    return
                data, self._buffer = self._buffer, bytearray()
            try:
                view = memoryview(data)
                while view:  # a raw file may take part of it (a signal, a nearly full disk)
                    view = view[self._stream.write(view) or len(view) :]
                self._stream.flush()
            except (OSError, ValueError) as exc:  # a full disk, a closed stream: say so, go on
                print(f"log lines lost ({len(data)} bytes): {exc}", file=sys.stderr)

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="log-flusher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._pending.wait()
            time.sleep(self._interval)  # let the lines of the next few ms join this write
            self.flush()


_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z


class JsonLogger:
    """The services' logger: `logger.info("event", key=value, ...)` writes one JSON line.

    Every line written while a request is served names it (`request_id`, and `trace_id` and
    `span_id` when traced), not only the request line: a rate-limiter refusal, a breaker
    opening, a cache error. `debug` writes nothing (the services log at info and above).
    """

    __slots__ = ("_fields", "_writer")

    def __init__(self, writer: LineWriter, fields: dict[str, Any]) -> None:
        self._writer = writer
        self._fields = fields

    def bind(self, **fields: Any) -> JsonLogger:
        return JsonLogger(self._writer, {**self._fields, **fields})

    def _write(self, level: str, event: str, fields: dict[str, Any]) -> None:
        # `fields` is the call's own keyword dict: the line is built in it, not in a copy.
        for key, value in self._fields.items():
            fields.setdefault(key, value)
        fields["event"] = event
        fields["level"] = level
        if "request_id" not in fields:
            ctx = context.current.get()
            if ctx is not None:
                fields["request_id"] = ctx.request_id
                if "trace_id" in ctx.extra:
                    fields["trace_id"] = ctx.extra["trace_id"]
                    fields["span_id"] = ctx.extra["span_id"]
        fields["timestamp"] = datetime.now(UTC)  # orjson writes it as RFC 3339, `Z` for UTC
        self._writer.msg(orjson.dumps(fields, default=repr, option=_OPTIONS))

    def flush(self) -> None:
        """Write the lines still waiting. The services call it last in their lifespan: uvicorn,
        stopped by a signal, ends by raising that signal again once shut down, so the process
        dies of it and no `atexit` handler runs."""
        self._writer.flush()

    def debug(self, event: str, **fields: Any) -> None:
        return None  # below the services' level

    def info(self, event: str, **fields: Any) -> None:
        self._write("info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._write("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._write("error", event, fields)

    def critical(self, event: str, **fields: Any) -> None:
        self._write("critical", event, fields)


# What services pass around: `logger.info("event", key=value, ...)`, `logger.bind(...)`.
Logger = JsonLogger


def make_logger(
    service: str,
    log_file: str | None,
    enabled: bool = True,
    *,
    flush_seconds: float = FLUSH_SECONDS,
) -> Logger:
    """Return a logger writing JSON lines, or a no-op one when disabled.

    Lines wait at most `flush_seconds` to be written (0: each is written as it comes)."""
    if not enabled:
        return cast(Logger, _Off())
    stream: BinaryIO
    if log_file:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = path.open("ab", buffering=0)
    else:
        stream = sys.stdout.buffer
    # pid: with several uvicorn workers, which process answered.
    return JsonLogger(LineWriter(stream, flush_seconds), {"service": service, "pid": os.getpid()})
