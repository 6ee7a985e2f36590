"""A run's OpenTelemetry spans (`spans.jsonl`): read them, join them to the samples, draw them.

Every service the lab starts traces its requests (`perflab_services.common.tracing`) and the lab
collects the spans into the run folder, one JSON object per line:
`trace_id, span_id, parent_span_id, name, service, kind, start_unix_nano, end_unix_nano,
duration_ms, status, attributes`, plus the run's `experiment, variant, repeat`.

The trace id *is* the request id the load generator recorded with each sample, so joining is
one merge on `request_id == trace_id`, no bookkeeping. Per request that gives:

- `server_ms`: the outermost server span (the first service the request reached), which ends
  when the last byte of the response is handed to the server;
- `network_ms` = `service_ms - server_ms`: what the client waited beyond the server's own time
  (loopback, HTTP parsing on both sides, the event loop picking the request up);
- `db_ms`: the SQL spans, `db_spans` how many (the N+1 shows as one per row);
- `cache_ms`: the cache's own time (look-up and store, as the cache timed it; on a miss the
  cache span also holds the loader, whose SQL counts as `db_ms`);
- `app_ms` = `server_ms - db_ms - cache_ms`: the rest (framework, serialization, Python; behind
  a gateway also the hop to the catalog).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from perflab.results import Run

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "SPAN_COLUMNS",
    "join_spans",
    "read_spans",
    "request_parts",
    "slowest",
    "trace",
    "typical_split",
    "waterfall",
]

SPAN_COLUMNS = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "service",
    "kind",
    "start_unix_nano",
    "end_unix_nano",
    "duration_ms",
    "status",
    "attributes",
]
PARTS = ["latency_ms", "client_wait_ms", "network_ms", "app_ms", "db_ms", "cache_ms"]


def _path(run: Run | str | Path) -> Path:
    if isinstance(run, Run):
        return run.spans_file
    p = Path(run)
    if p.is_dir():
        return p / "spans.jsonl"
    if p.exists():
        return p
    return Run.load(run).spans_file


def read_spans(run: Run | str | Path) -> pd.DataFrame:
    """A run's spans as a frame (a `Run`, its folder, its id, "latest", or a span file).

    No spans (tracing was off, or an older run) is an empty frame with the columns."""
    path = _path(run)
    rows: list[dict[str, Any]] = []
    if path.exists():
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    if not rows:
        return pd.DataFrame(columns=SPAN_COLUMNS)
    df = pd.DataFrame(rows)
    df["trace_id"] = df["trace_id"].astype("string")
    return df


def _is_sql(attributes: Any) -> bool:
    return isinstance(attributes, dict) and "db.system.name" in attributes


def request_parts(spans: pd.DataFrame) -> pd.DataFrame:
    """Per trace: `server_ms`, `db_ms`, `db_spans`, `cache_ms`, `spans`, `services`."""
    cols = ["trace_id", "server_ms", "db_ms", "db_spans", "cache_ms", "spans", "services"]
    if spans.empty:
        return pd.DataFrame(columns=cols)
    s = spans
    ids = set(zip(s["trace_id"], s["span_id"], strict=True))
    is_root = [
        kind == "server" and (tid, parent) not in ids
        for tid, parent, kind in zip(s["trace_id"], s["parent_span_id"], s["kind"], strict=True)
    ]
    roots = s[is_root].sort_values("start_unix_nano").drop_duplicates("trace_id")
    sql = s[s["attributes"].map(_is_sql)]
    cache = s[s["name"].str.startswith("cache ")]
    # A cache span holds the loader of a miss too (its SQL, its wait for a thread): the cache's
    # own time is what it measured itself, on the span as `cache.duration_ms`.
    cache_ms = cache["attributes"].map(lambda a: float(a.get("cache.duration_ms", 0.0)))
    out = roots[["trace_id", "duration_ms"]].rename(columns={"duration_ms": "server_ms"})
    out = out.set_index("trace_id")
    out["db_ms"] = sql.groupby("trace_id")["duration_ms"].sum()
    out["db_spans"] = sql.groupby("trace_id").size()
    out["cache_ms"] = cache_ms.groupby(cache["trace_id"]).sum()
    out["spans"] = s.groupby("trace_id").size()
    out["services"] = s.groupby("trace_id")["service"].nunique()
    out = out.fillna({"db_ms": 0.0, "db_spans": 0, "cache_ms": 0.0}).reset_index()
    out["db_spans"] = out["db_spans"].astype(int)
    return out[cols]


def join_spans(samples: pd.DataFrame, spans: pd.DataFrame) -> pd.DataFrame:
    """One row per sample whose request has a trace, with the split of its latency (module
    docstring). Compare `len(result)` with `len(samples)`: how many requests were traced."""
    parts = request_parts(spans)
    extra = ["server_ms", "network_ms", "app_ms", "db_ms", "cache_ms", "db_spans", "spans"]
    if samples.empty or parts.empty:
        return pd.DataFrame(columns=[*samples.columns, *extra, "client_wait_ms"])
    client = samples.assign(request_id=samples["request_id"].astype("string").str.lower())
    out = client.merge(parts, left_on="request_id", right_on="trace_id", how="inner")
    out["client_wait_ms"] = out["latency_ms"] - out["service_ms"]
    out["network_ms"] = out["service_ms"] - out["server_ms"]
    out["app_ms"] = out["server_ms"] - out["db_ms"] - out["cache_ms"]
    return out.drop(columns=["trace_id"])


def typical_split(
    joined: pd.DataFrame, by: tuple[str, ...] = ("variant",), band: float = 0.1
) -> pd.DataFrame:
    """Where the time of a typical request went, per group, in ms.

    Medians of each part taken separately do not add up (the median request's network time is
    not the median network time; a part can even come out negative). So each request is split
    on its own first, then the requests whose latency lies within `band` around the group's
    median (the 45th to 55th percentile by default) are averaged: their parts add up to their
    latency, and none is negative unless it was for those requests.
    """
    keys = [k for k in by if k in joined.columns]
    parts = [p for p in PARTS if p in joined.columns]
    if joined.empty:
        return pd.DataFrame(columns=[*keys, "requests", *parts])
    rows = []
    for key, g in joined.groupby(keys, sort=False) if keys else [((), joined)]:
        lo, hi = g["latency_ms"].quantile([0.5 - band / 2, 0.5 + band / 2])
        mid = g[(g["latency_ms"] >= lo) & (g["latency_ms"] <= hi)]
        if mid.empty:
            mid = g
        row: dict[str, Any] = dict(
            zip(keys, key if isinstance(key, tuple) else (key,), strict=True)
        )
        row["requests"] = len(mid)
        row.update({p: float(mid[p].mean()) for p in parts})
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, "requests", *parts])


def trace(spans: pd.DataFrame, trace_id: str) -> pd.DataFrame:
    """One trace's spans in start order, with depth (0 = the root) and start offset in ms."""
    t = spans[spans["trace_id"] == trace_id.lower()].sort_values("start_unix_nano")
    if t.empty:
        return t.assign(depth=[], offset_ms=[])
    parent_of = dict(zip(t["span_id"], t["parent_span_id"], strict=True))

    def depth(span_id: str) -> int:
        d, p = 0, parent_of.get(span_id)
        while p in parent_of and d < 100:
            d, p = d + 1, parent_of.get(p)
        return d

    t0 = int(t["start_unix_nano"].min())
    return t.assign(
        depth=[depth(s) for s in t["span_id"]],
        offset_ms=(t["start_unix_nano"] - t0) / 1e6,
    ).reset_index(drop=True)


def slowest(joined: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The `n` slowest traced requests: id, variant, endpoint, latency and its split."""
    cols = [
        c
        for c in [
            "request_id",
            "experiment",
            "variant",
            "endpoint",
            "latency_ms",
            "network_ms",
            "app_ms",
            "db_ms",
            "db_spans",
            "cache_ms",
            "spans",
        ]
        if c in joined.columns
    ]
    return joined.nlargest(n, "latency_ms")[cols].reset_index(drop=True)


_COLORS = {"server": "#4c72b0", "client": "#dd8452", "internal": "#55a868"}


def waterfall(
    spans: pd.DataFrame,
    trace_id: str,
    ax: Axes | None = None,
    *,
    max_rows: int = 60,
) -> Axes:
    """Draw one trace as a waterfall: a bar per span, children under their parent, in time.

    Server spans blue, outgoing calls (SQL, HTTP to the catalog) orange, internal (cache) green.
    A trace with more than `max_rows` spans (the naive N+1) shows the first ones and says so.
    """
    import matplotlib.pyplot as plt

    t = trace(spans, trace_id)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.25 * min(len(t), max_rows) + 1.5))
    if t.empty:
        ax.set_title(f"no spans for trace {trace_id}")
        return ax
    shown = t.head(max_rows)
    y = np.arange(len(shown))
    colors = [_COLORS.get(k, "#8172b2") for k in shown["kind"]]
    ax.barh(y, shown["duration_ms"], left=shown["offset_ms"], color=colors, height=0.7)
    labels = [
        f"{'  ' * d}{svc}: {name}"
        for d, svc, name in zip(shown["depth"], shown["service"], shown["name"], strict=True)
    ]
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms since the trace started")
    ax.set_ylabel("span (service: name), children indented")
    more = f" (first {max_rows} of {len(t)} spans)" if len(t) > max_rows else ""
    total = float((t["end_unix_nano"].max() - t["start_unix_nano"].min()) / 1e6)
    ax.set_title(f"trace {trace_id}: {len(t)} spans, {total:.2f} ms{more}", fontsize=10)
    return ax
