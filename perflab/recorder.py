"""Raw per-request samples and the open-model schedule, for any locustfile.

Locustfiles import it (`from perflab.recorder import Recorder`) and the harness reads what it
writes with the same `COLUMNS`: one definition for both sides.

Locust's own statistics round percentiles into buckets and do not correct coordinated omission,
so the lab records every request itself: when it was *meant* to start, when it was sent, how
long it took (perf_counter, sub-microsecond), its status and the response's diagnostic headers.
Samples are buffered and flushed to CSV twice a second, so a run that is interrupted, or killed,
keeps what it measured up to then.
"""

from __future__ import annotations

import csv
import math
import os
import random
import threading
import time
import uuid
from pathlib import Path

COLUMNS = [
    "t_intended",
    "t_start",
    "latency_ms",
    "service_ms",
    "status",
    "ok",
    "endpoint",
    "x_cache",
    "x_db_queries",
    "request_id",
    "worker",
]


class Recorder:
    def __init__(self, path: str | os.PathLike[str], worker: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.worker = worker or str(os.getpid())
        self._rows: list[list[object]] = []
        self._lock = threading.Lock()
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file)
        if new:
            self._csv.writerow(COLUMNS)
            self._file.flush()

    def record(
        self,
        *,
        intended_pc: float,
        start_pc: float,
        end_pc: float,
        start_wall: float,
        status: int,
        ok: bool,
        endpoint: str,
        x_cache: str | None,
        x_db_queries: str | None,
        request_id: str,
    ) -> None:
        row = [
            f"{start_wall - (start_pc - intended_pc):.6f}",
            f"{start_wall:.6f}",
            f"{(end_pc - intended_pc) * 1000:.4f}",
            f"{(end_pc - start_pc) * 1000:.4f}",
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

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
        if rows and not self._file.closed:
            self._csv.writerows(rows)
            self._file.flush()

    def close(self) -> None:
        self.flush()
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
    return uuid.uuid4().hex
