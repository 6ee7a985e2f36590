"""Scrape a service's /metrics every second while load runs: a time series per metric."""

from __future__ import annotations

import json
import threading
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

KEEP = (
    "http_requests_total",
    "http_request_duration_seconds_sum",
    "http_request_duration_seconds_count",
    "cache_requests_total",
    "db_queries_per_request_sum",
    "db_queries_per_request_count",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "rate_limited_total",
    "upstream_requests_total",
    "upstream_retries_total",
    "circuit_breaker_opened_total",
)


def parse(text: str, t: float) -> list[dict]:
    rows = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in KEEP:
                rows.append(
                    {
                        "t": t,
                        "metric": s.name,
                        "labels": json.dumps(s.labels, sort_keys=True),
                        "value": float(s.value),
                    }
                )
    return rows


class MetricsScraper:
    """A background thread; `rows` holds every kept sample. Scrape errors are counted."""

    def __init__(self, url: str, interval: float = 1.0) -> None:
        self.url = url.rstrip("/") + "/metrics"
        self.interval = interval
        self.rows: list[dict] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="perflab-scraper", daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while not self._stop.is_set():
                t = time.time()
                try:
                    resp = client.get(self.url)
                    if resp.status_code == 200:
                        self.rows.extend(parse(resp.text, t))
                    else:
                        self.errors += 1
                except httpx.HTTPError:
                    self.errors += 1
                self._stop.wait(max(0.0, self.interval - (time.time() - t)))

    def start(self) -> MetricsScraper:
        self._thread.start()
        return self

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.rows


def serves_metrics(url: str) -> bool:
    """Whether `url` answers a Prometheus `/metrics` (our services do; any other may not)."""
    try:
        resp = httpx.get(url.rstrip("/") + "/metrics", timeout=2.0)
    except httpx.HTTPError:
        return False
    return resp.status_code == 200 and "# TYPE" in resp.text


def scraper_if_served(url: str) -> MetricsScraper | None:
    """A started scraper of a service the lab did not start, when it has a `/metrics`."""
    return MetricsScraper(url).start() if serves_metrics(url) else None
