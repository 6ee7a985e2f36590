"""Raw per-request samples and the open-model schedule: one definition of the sample columns.

The recorder plugin (`perflab.locust_plugin`, inside Locust) writes samples with `Recorder`
and the harness reads them back with the same `COLUMNS`: one definition for both sides. It
imports the standard library only, as the Locust side must.

Locust's own statistics round percentiles into buckets and do not correct coordinated omission,
so the lab records every request itself:

- `t_intended`, `t_start`: when the request was *meant* to start (open model: its arrival
  slot; closed model: when it was sent) and when it was sent, seconds since the epoch;
- `service_ms`: from sending to the end of the response, as Locust's clients time it
  (perf_counter, sub-microsecond): what the service and the network took;
- `lateness_ms` = `t_start - t_intended`: how late the generator sent it. In the open model
  that is the coordinated omission a slow service causes (all users busy), plus the
  generator's own error (a timer that wakes late, a busy CPU); 0 in the closed model. wrk2
  reports latency from the intended start and, apart (`--u_latency`), from sending: the
  difference between the two is this column;
- `latency_ms` = `lateness_ms + service_ms`: from the intended start, as a user who arrived on
  time experiences it (coordinated omission corrected);
- `status`, `ok` (Locust's verdict: no exception), `endpoint` (Locust's request name), the
  diagnostic response headers `x_cache`, `x_db_queries`, the `request_id` sent, and the
  `worker` (host:pid of the Locust process).

Samples are buffered and flushed to CSV twice a second, so a run that is interrupted, or killed,
keeps what it measured up to then.
"""

from __future__ import annotations

import csv
import math
import os
import random
import socket
import threading
import time
import uuid
from pathlib import Path

COLUMNS = [
    "t_intended",
    "t_start",
    "latency_ms",
    "service_ms",
    "lateness_ms",
    "status",
    "ok",
    "endpoint",
    "x_cache",
    "x_db_queries",
    "request_id",
    "worker",
]


class Recorder:
    """Buffers samples as rows of `COLUMNS` and appends them to a CSV file on `flush`.

    Without a `path` it only buffers: a distributed Locust worker `take`s its rows and sends
    them to the master, whose recorder `write`s them into the one file of the run.
    """

    def __init__(self, path: str | os.PathLike[str] | None, worker: str | None = None) -> None:
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._rows: list[list[object]] = []
        self._lock = threading.Lock()
        self.path = Path(path) if path is not None else None
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._file = self.path.open("a", newline="", encoding="utf-8")
            self._csv = csv.writer(self._file)
            if new:
                self._csv.writerow(COLUMNS)
                self._file.flush()

    def record(
        self,
        *,
        t_intended: float,
        t_start: float,
        service_ms: float,
        status: int,
        ok: bool,
        endpoint: str,
        x_cache: str | None,
        x_db_queries: str | None,
        request_id: str,
    ) -> None:
        """One request. Times in seconds since the epoch; `service_ms` from a perf_counter."""
        lateness_ms = (t_start - t_intended) * 1000
        row = [
            f"{t_intended:.6f}",
            f"{t_start:.6f}",
            f"{lateness_ms + service_ms:.4f}",
            f"{service_ms:.4f}",
            f"{lateness_ms:.4f}",
            status,
            int(ok),
            endpoint,
            x_cache or "",
            x_db_queries or "",
            request_id,
            self.worker,
        ]
        with self._lock:
            self._rows.append(row)

    def pending(self) -> int:
        return len(self._rows)

    def take(self) -> list[list[object]]:
        """The rows recorded since the last `take` or `flush`, removed from the buffer."""
        with self._lock:
            rows, self._rows = self._rows, []
        return rows

    def write(self, rows: list[list[object]]) -> None:
        """Append rows (this recorder's, or a worker's) to the file."""
        if rows and self._file is not None and not self._file.closed:
            self._csv.writerows(rows)
            self._file.flush()

    def flush(self) -> None:
        if self._file is not None:  # without a file, rows wait for `take`
            self.write(self.take())

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()


class Schedule:
    """Intended start times for an open model: constant gaps, or exponential (Poisson).

    `offset` (seconds; None for a single process) puts a distributed worker's constant-rate
    grid on a clock shared by all workers, shifted so that N workers at rate/N each interleave
    into one evenly spaced stream.
    """

    def __init__(
        self,
        rate: float,
        poisson: bool = False,
        seed: int | None = None,
        offset: float | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.offset = offset
        self.poisson = poisson
        self.rng = random.Random(seed)
        self._next: float | None = None

    def next(self) -> float:
        now = time.perf_counter()
        if self._next is None:
            if self.poisson or self.offset is None:
                self._next = now
            else:  # on a grid shared by all workers (perf_counter is system-wide on Linux)
                self._next = math.ceil((now - self.offset) * self.rate) / self.rate + self.offset
        else:
            gap = self.rng.expovariate(self.rate) if self.poisson else 1.0 / self.rate
            self._next += gap
        return self._next


def new_request_id() -> str:
    """A request id that is also a valid W3C trace id (32 lowercase hex digits, not all zero:
    a version-4 UUID always has a 4 in it), so a trace can reuse it as its trace id."""
    return uuid.uuid4().hex


def traceparent_for(request_id: str) -> str | None:
    """The W3C `traceparent` that makes the request id the trace id (None if it cannot be one).

    Its parent span id is the request id's last 16 hex digits: the load generator records no
    span of its own (its sample is the client's view), so the services' root span points at an
    id a waterfall can give to the sample. Flags 00: the service's sampler decides."""
    rid = request_id.lower()
    if len(rid) != 32 or rid.strip("0123456789abcdef") or not int(rid, 16) or not int(rid[16:], 16):
        return None
    return f"00-{rid}-{rid[16:]}-00"
