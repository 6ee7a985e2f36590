"""Prometheus metrics every service exposes, on a registry of its own.

Names follow Prometheus conventions: base units (seconds), `_total` on counters, and the route
*template* (`/products/{product_id}`) as the label, never the raw path, so label cardinality
stays bounded whatever ids the load uses.

With several uvicorn workers each process has its own counters, and a scrape reaches just one
of them. The lab then sets `PROMETHEUS_MULTIPROC_DIR` (a fresh folder per service): every worker
writes its values to files there, and /metrics merges the files of all workers, so one scrape
counts every request whichever worker answered it. Process CPU and memory are summed over the
live processes of the service (the uvicorn supervisor and its workers).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir()
        if self.multiprocess_dir is None:
            self.registry.register(ProcessesCollector(lambda: {os.getpid()}))
            PlatformCollector(registry=self.registry)
        labels = ("method", "route", "status")
        self.requests = Counter(
            "http_requests_total", "HTTP requests answered.", labels, registry=self.registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from request start to the end of the response, in the service.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.cache = Counter(
            "cache_requests_total",
            "Cache look-ups by result (hit, miss, bypass, error).",
            ("cache", "result"),
            registry=self.registry,
        )
        self.db_queries = Histogram(
            "db_queries_per_request",
            "SQL statements run for one request.",
            ("route",),
            buckets=(0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 500),
            registry=self.registry,
        )
        self.service = service
        # `labels()` validates and looks up its child on every call; a request's series are
        # few (method x route template x status class), so each is looked up once and kept.
        self._series: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._cache_series: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float, db_queries: int):
        key = (method, route, status // 100)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._children(method, route, f"{status // 100}xx")
        requests, duration, queries = series
        requests.inc()
        duration.observe(seconds)
        queries.observe(db_queries)

    def count_cache(self, cache: str, result: str) -> None:
        child = self._cache_series.get((cache, result))
        if child is None:
            child = self._cache_series[(cache, result)] = self.cache.labels(cache, result)
        child.inc()

    def _children(self, method: str, route: str, status_class: str) -> tuple[Any, Any, Any]:
        return (
            self.requests.labels(method, route, status_class),
            self.duration.labels(method, route, status_class),
            self.db_queries.labels(route),
        )

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        registry.register(ProcessesCollector(_service_pids(self.multiprocess_dir)))
        return generate_latest(registry), CONTENT_TYPE_LATEST


def multiprocess_dir() -> Path | None:
    """The multiprocess folder when prometheus_client runs in multiprocess mode, else None."""
    raw = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(raw) if raw and Path(raw).is_dir() else None


class ProcessesCollector:
    """process_cpu_seconds_total and process_resident_memory_bytes, summed over `pids()`.

    From psutil, so the metrics panels work on macOS and Windows too (prometheus_client's own
    ProcessCollector reads Linux's /proc and reports nothing elsewhere). A process that exits
    between listing and reading is skipped.
    """

    def __init__(self, pids: Callable[[], set[int]]) -> None:
        self.pids = pids

    def collect(self) -> Iterable[Metric]:
        cpu = rss = 0.0
        for pid in self.pids():
            try:
                proc = psutil.Process(pid)
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                    rss += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        c = CounterMetricFamily(
            "process_cpu_seconds", "CPU time of the service's processes, summed.", value=cpu
        )
        m = GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory of the service's processes, summed."
        )
        m.add_metric([], rss)
        return [c, m]


def _service_pids(folder: Path) -> Callable[[], set[int]]:
    """This worker's parent (the uvicorn supervisor) and every worker that wrote a metrics file
    (`counter_<pid>.db`) and is still alive."""

    def pids() -> set[int]:
        found = {os.getppid(), os.getpid()}
        for f in folder.glob("*.db"):
            tail = f.stem.rsplit("_", 1)[-1]
            if tail.isdigit():
                found.add(int(tail))
        return {p for p in found if p > 1 and psutil.pid_exists(p)}

    return pids
