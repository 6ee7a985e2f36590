"""Trace ids, the span file format and the per-request time split (no service started)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from opentelemetry.trace import SpanKind

from perflab import traces
from perflab.recorder import new_request_id, traceparent_for
from perflab_services.common import context, tracing


class _Settings:
    service_name = "unit"
    tracing = "always"
    trace_ratio = 1.0

    def __init__(self, spans_file: Path) -> None:
        self.spans_file = str(spans_file)


def test_traceparent_round_trip() -> None:
    rid = new_request_id()
    tp = traceparent_for(rid)
    assert tp is not None and tp.startswith(f"00-{rid}-{rid[16:]}")
    sc = tracing.parse_traceparent(tp.encode())
    assert sc is not None and f"{sc.trace_id:032x}" == rid and sc.is_remote
    assert tracing.traceparent(sc) == tp
    for bad in ("abc", "0" * 32, "g" * 32, "x" * 31):
        assert traceparent_for(bad) is None
    for bad in (b"00-xyz", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01", b""):
        assert tracing.parse_traceparent(bad) is None


@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("SELECT products.id FROM products WHERE x = ?", "SELECT products"),
        ('SELECT count(*) FROM "reviews"', "SELECT reviews"),
        ("INSERT INTO reviews (a) VALUES (?)", "INSERT reviews"),
        ("UPDATE products SET a=1", "UPDATE products"),
        ("PRAGMA journal_mode=WAL", "PRAGMA"),
    ],
)
def test_sql_span_name(sql: str, name: str) -> None:
    assert tracing.sql_span_name(sql) == name


def test_spans_written_as_json_lines_with_the_request_id_as_trace_id(tmp_path: Path) -> None:
    """The real SDK, our exporter: a root span takes the request id as its trace id."""
    path = tmp_path / "spans.jsonl"
    tracer = tracing.configure(_Settings(path))  # type: ignore[arg-type]
    assert tracer is not None
    rid = new_request_id()
    token = context.current.set(context.RequestContext(rid))
    try:
        with tracer.start_as_current_span("GET /x", kind=SpanKind.SERVER):
            with tracing.span("work", answer=42):
                pass
            sql = tracing.start_sql_span("SELECT 1 FROM products", "sqlite")
            assert sql is not None
            sql.end()
    finally:
        context.current.reset(token)
        tracing.shutdown()
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert {r["name"] for r in rows} == {"GET /x", "work", "SELECT products"}
    assert {r["trace_id"] for r in rows} == {rid}
    root = next(r for r in rows if r["kind"] == "server")
    assert root["parent_span_id"] is None
    assert all(r["parent_span_id"] == root["span_id"] for r in rows if r is not root)
    work = next(r for r in rows if r["name"] == "work")
    assert work["attributes"] == {"answer": 42} and work["status"] == "unset"
    assert all(r["end_unix_nano"] >= r["start_unix_nano"] for r in rows)


def test_no_spans_outside_a_request_or_when_off(tmp_path: Path) -> None:
    assert tracing.start_sql_span("SELECT 1", "sqlite") is None  # not configured: off
    tracing.configure(_Settings(tmp_path / "s.jsonl"))  # type: ignore[arg-type]
    try:
        assert tracing.start_sql_span("SELECT 1", "sqlite") is None  # start-up SQL: no trace
    finally:
        tracing.shutdown()


def _span(tid: str, sid: str, parent: str | None, kind: str, ms: float, **kw: object) -> dict:
    return {
        "trace_id": tid,
        "span_id": sid,
        "parent_span_id": parent,
        "name": kw.get("name", kind),
        "service": "catalog",
        "kind": kind,
        "start_unix_nano": 0,
        "end_unix_nano": int(ms * 1e6),
        "duration_ms": ms,
        "status": "unset",
        "attributes": kw.get("attributes", {}),
    }


def test_request_parts_and_typical_split() -> None:
    db = {"attributes": {"db.system.name": "sqlite"}}
    spans = pd.DataFrame(
        [
            _span("a" * 32, "1", "x", "server", 10.0),
            _span(
                "a" * 32,
                "2",
                "1",
                "internal",
                4.0,
                name="cache memory",
                attributes={"cache.duration_ms": 1.0},
            ),
            _span("a" * 32, "3", "2", "client", 3.0, **db),  # the loader of a miss
            _span("a" * 32, "4", "1", "client", 1.0, **db),
            _span("b" * 32, "5", "y", "server", 2.0),
        ]
    )
    parts = traces.request_parts(spans).set_index("trace_id")
    a = parts.loc["a" * 32]
    assert (a["server_ms"], a["db_ms"], a["db_spans"], a["cache_ms"]) == (10.0, 4.0, 2, 1.0)
    assert parts.loc["b" * 32, "db_spans"] == 0
    samples = pd.DataFrame(
        {
            "request_id": ["A" * 32, "b" * 32, "c" * 32],
            "latency_ms": [12.0, 3.0, 5.0],
            "service_ms": [12.0, 3.0, 5.0],
            "variant": ["v", "v", "v"],
        }
    )
    joined = traces.join_spans(samples, spans)
    assert len(joined) == 2  # c has no trace; ids compare lower-case
    row = joined.set_index("request_id").loc["a" * 32]
    assert (row["network_ms"], row["app_ms"]) == (2.0, 5.0)
    split = traces.typical_split(joined)
    total = split[["client_wait_ms", "network_ms", "app_ms", "db_ms", "cache_ms"]].sum(axis=1)
    assert float((total - split["latency_ms"]).abs().max()) < 1e-9
