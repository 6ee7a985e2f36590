"""A real Prometheus for a run, when one is on PATH: it scrapes every service the lab starts.

The lab's own scraper (`perflab.scrape`) reads /metrics once a second into `metrics.csv`, which
is enough for plots. A real Prometheus is what users run in production and what PromQL needs:
`rate()`, `histogram_quantile()` over the buckets, and why its p95 is not the exact p95 of the
samples (it interpolates inside a bucket: `services/common/metrics.py` LATENCY_BUCKETS).

For a run the lab starts `prometheus` with a generated configuration: one job, a 1 s scrape
interval, targets from a file (file-based service discovery: the lab rewrites
`targets.json` as services start and stop, Prometheus rereads it within a second), its data in
the run folder (`prometheus/data`), its HTTP API on a free loopback port. It is stopped with the
run. Without a `prometheus` binary nothing changes (the manifest says how to get one):
`apt-get install prometheus` (Debian, Ubuntu), `conda install -c conda-forge prometheus`, or
the release tarball from prometheus.io.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from perflab.errors import LabError
from perflab.procs import ManagedProcess, free_port, spawn, wait_until

HOW_TO_GET = (
    "no prometheus on PATH: apt-get install prometheus, or conda install -c conda-forge "
    "prometheus, to have the lab run one for each run"
)
SCRAPE_SECONDS = 1

# What the lab asks Prometheus after a run (saved in the run folder as `promql.csv`): the
# queries a dashboard shows, by experiment, variant, app (catalog, gateway) and route.
QUERIES = {
    "up": "max by (experiment, variant, app, service) (up)",
    "rps": "sum by (experiment, variant, app, route) (rate(http_requests_total[5s]))",
    "error_ratio": (
        'sum by (experiment, variant, app) (rate(http_requests_total{status="5xx"}[5s]))'
        " / sum by (experiment, variant, app) (rate(http_requests_total[5s]))"
    ),
    "p95_seconds": (
        "histogram_quantile(0.95, sum by (experiment, variant, app, route, le) "
        "(rate(http_request_duration_seconds_bucket[5s])))"
    ),
    "p50_seconds": (
        "histogram_quantile(0.5, sum by (experiment, variant, app, route, le) "
        "(rate(http_request_duration_seconds_bucket[5s])))"
    ),
}


def binary() -> str | None:
    """The `prometheus` on PATH, or None."""
    return shutil.which("prometheus")


def _config(targets: Path) -> str:
    return f"""# Written by perflab for one run: scrape what the lab started, every second.
global:
  scrape_interval: {SCRAPE_SECONDS}s
  evaluation_interval: {SCRAPE_SECONDS}s
scrape_configs:
  - job_name: perflab
    # A service the lab serves over HTTPS (the tls experiment) has the lab's own certificate.
    tls_config:
      insecure_skip_verify: true
    file_sd_configs:
      - files: ["{targets}"]
        refresh_interval: 1s
"""


class Prometheus:
    """A Prometheus server scraping the services the lab registers with `add`."""

    def __init__(self, folder: Path, exe: str | None = None) -> None:
        self.folder = folder
        self.exe = exe or binary()
        self.targets_file = folder / "targets.json"
        self.proc: ManagedProcess | None = None
        self.url = ""
        self._targets: dict[str, dict[str, str]] = {}

    def start(self, timeout: float = 60.0) -> Prometheus:
        if self.exe is None:
            raise LabError(HOW_TO_GET)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_targets()
        config = self.folder / "prometheus.yml"
        config.write_text(_config(self.targets_file))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        argv = [
            self.exe,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
            "--log.level=warn",
        ]
        self.proc = spawn("prometheus", argv, output=self.folder / "prometheus.out")
        wait_until(self._ready, self.proc, timeout, "answering /-/ready")
        return self

    def _ready(self) -> bool:
        return httpx.get(self.url + "/-/ready", timeout=1.0).status_code == 200

    def add(self, url: str, **labels: str) -> None:
        """Scrape the service at `url` (its /metrics) from now on, with these labels."""
        self._targets[url] = labels
        self._write_targets()

    def remove(self, url: str) -> None:
        """Stop scraping `url`. Best effort: it runs in clean-up, where a full disk must not
        hide the error that matters (the run's own), and a stopped service is only a failed
        scrape to Prometheus."""
        self._targets.pop(url, None)
        with contextlib.suppress(OSError):
            self._write_targets()

    def wait_scraped(self, urls: list[str], after: float, timeout: float = 15.0) -> bool:
        """Wait until Prometheus has finished a successful scrape of every one of `urls` that
        began after `after` (Unix seconds). The runner waits once before the load (so the
        series exist from its start) and once after it, before the service stops (so the last
        second of counts is in Prometheus too). Returns False when `timeout` passes first: a
        busy machine delays scrapes, and the run goes on with what Prometheus has."""
        wanted = {url.rstrip("/") + "/metrics" for url in urls}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                resp = httpx.get(f"{self.url}/api/v1/targets", timeout=5)
                done = {
                    t["scrapeUrl"]
                    for t in resp.json()["data"]["activeTargets"]
                    if t["health"] == "up" and _unix(t["lastScrape"]) > after
                }
                if wanted <= done:
                    return True
            time.sleep(0.2)
        return False

    def _write_targets(self) -> None:
        groups = [
            {
                "targets": [url.split("://", 1)[-1]],
                "labels": {**labels, "__scheme__": url.split("://", 1)[0]},
            }
            for url, labels in self._targets.items()
        ]
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(groups, indent=1))
        os.replace(tmp, self.targets_file)  # Prometheus never reads half a file

    def query(self, promql: str, at: float | None = None) -> pd.DataFrame:
        """An instant query: one row per series, its labels as columns and `value`."""
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        data = self._api("query", params)
        rows = [
            {**r["metric"], "t": float(r["value"][0]), "value": float(r["value"][1])} for r in data
        ]
        return pd.DataFrame(rows)

    def query_range(self, promql: str, start: float, end: float, step: float = 1.0) -> pd.DataFrame:
        """A range query: one row per (series, time), labels as columns, `t` and `value`."""
        params = {"query": promql, "start": start, "end": end, "step": step}
        rows = [
            {**r["metric"], "t": float(t), "value": float(v)}
            for r in self._api("query_range", params)
            for t, v in r["values"]
        ]
        return pd.DataFrame(rows)

    def _api(self, what: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.url}/api/v1/{what}", params=params, timeout=30)
        body = resp.json()
        if body.get("status") != "success":
            raise LabError(f"PromQL {params['query']!r}: {body.get('error', resp.text[:200])}")
        return list(body["data"]["result"])

    def series_count(self) -> int:
        """How many scraped series Prometheus holds (`up` per target counts too)."""
        return len(self.query("up"))

    def save(self, path: Path, start: float, end: float) -> pd.DataFrame:
        """Run `QUERIES` over [start, end] and save them, tidy, to `path` (CSV)."""
        frames = []
        for name, promql in QUERIES.items():
            df = self.query_range(promql, start, end)
            if not df.empty:
                frames.append(df.assign(query=name))
        out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        out.to_csv(path, index=False)
        return out

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _unix(rfc3339: str) -> float:
    """Unix seconds of Prometheus' RFC 3339 times (nanosecond fractions, `Z` or an offset)."""
    m = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", rfc3339)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {rfc3339!r}")
    base, frac, zone = m.groups()
    stamp = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    return stamp + (float("0." + frac) if frac else 0.0)
