"""The gateway's own metrics, next to the shared HTTP ones: what happened upstream.

Counted per *attempt*, so retries and breaker trips are visible: a request that needed two
attempts adds one `connect_error` (or `timeout`) and one `2xx` outcome, and one retry.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from perflab_services.common.metrics import LATENCY_BUCKETS, ServiceMetrics


class UpstreamMetrics:
    def __init__(self, service: ServiceMetrics) -> None:
        registry = service.registry
        self.attempts = Counter(
            "upstream_requests_total",
            "Attempts to call the catalog, by outcome (2xx, 4xx, 5xx, timeout, connect_error, "
            "error, circuit_open).",
            ("method", "outcome"),
            registry=registry,
        )
        self.duration = Histogram(
            "upstream_request_duration_seconds",
            "Time of one attempt to call the catalog.",
            ("method",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "upstream_retries_total",
            "Attempts after the first one.",
            ("method",),
            registry=registry,
        )
        self.breaker_opened = Counter(
            "circuit_breaker_opened_total",
            "Times the circuit to the catalog opened.",
            registry=registry,
        )
