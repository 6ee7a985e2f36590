"""Prometheus metrics every service exposes, on a registry of its own.

Names follow Prometheus conventions: base units (seconds), `_total` on counters, and the route
*template* (`/products/{product_id}`) as the label, never the raw path, so label cardinality
stays bounded whatever ids the load uses.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

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
        ProcessCollector(registry=self.registry)
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

    def observe(self, method: str, route: str, status: int, seconds: float, db_queries: int):
        status_class = f"{status // 100}xx"
        self.requests.labels(method, route, status_class).inc()
        self.duration.labels(method, route, status_class).observe(seconds)
        self.db_queries.labels(route).observe(db_queries)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
