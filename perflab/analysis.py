"""Where did the time go? Client samples joined to the services' log lines on request id.

The load generator sends an `X-Request-ID` with every request and records it with the
latency it measured; the service logs the same id on its one canonical line per request, with
how long it spent (`duration_ms`) and on what (`db_ms`, `cache_ms`). Joining the two splits
each request's latency into:

- `client_wait_ms` = `latency_ms - service_ms`: time between when the request was meant to
  start and when it was sent (open model only; it is 0 in the closed model), the part that
  coordinated omission hides;
- `network_ms` = `service_ms - duration_ms`: what the client measured on the wire minus what the
  server measured inside (loopback, HTTP parsing, the event loop picking the request up);
- `db_ms`, `cache_ms`: from the log; `app_ms` = `duration_ms - db_ms - cache_ms`: the rest of the
  service's own time (framework, serialization, Python).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from perflab.results import Run, read_logs
from perflab.traces import typical_split

__all__ = ["join_requests", "join_run", "read_logs", "time_split"]

LOG_COLUMNS = ("request_id", "duration_ms", "db_ms", "cache_ms", "db_queries", "route", "status")


def join_requests(samples: pd.DataFrame, logs: pd.DataFrame) -> pd.DataFrame:
    """One row per request seen by both the client and a service log, with the time split.

    Requests without a log line (the service was killed, logging was off) are left out; compare
    `len(result)` to `len(samples)` to see how many joined.
    """
    if samples.empty or logs.empty or "request_id" not in logs.columns:
        return pd.DataFrame(
            columns=[*samples.columns, "duration_ms", "network_ms", "app_ms", "client_wait_ms"]
        )
    log = logs
    if "event" in log.columns:
        log = log[log["event"] == "request"]
    log = log[[c for c in LOG_COLUMNS if c in log.columns]].rename(
        columns={"status": "server_status"}
    )
    log = log.drop_duplicates("request_id").astype({"request_id": "string"})
    client = samples.astype({"request_id": "string"})
    out = client.merge(log, on="request_id", how="inner")
    for col in ("db_ms", "cache_ms"):
        if col not in out.columns:
            out[col] = 0.0
        out[col] = pd.to_numeric(out[col], errors="coerce").fillna(0.0)
    out["duration_ms"] = pd.to_numeric(out["duration_ms"], errors="coerce")
    out["client_wait_ms"] = out["latency_ms"] - out["service_ms"]
    out["network_ms"] = out["service_ms"] - out["duration_ms"]
    out["app_ms"] = out["duration_ms"] - out["db_ms"] - out["cache_ms"]
    return out


def join_run(run: Run | str | Path) -> pd.DataFrame:
    """`join_requests` for a `Run`, or a saved run's folder, id or "latest"."""
    if not isinstance(run, Run):
        run = Run.load(run)
    return join_requests(run.samples, run.logs)


def time_split(joined: pd.DataFrame, by: tuple[str, ...] = ("variant",)) -> pd.DataFrame:
    """Where a typical request's time went, per group, in ms: each request split on its own,
    then the requests around the median latency averaged (`perflab.traces.typical_split`:
    medians of each part taken separately do not add up, and can go negative)."""
    return typical_split(joined, by)
