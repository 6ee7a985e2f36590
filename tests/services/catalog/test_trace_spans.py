"""The N+1 is visible in a trace: one SQL span per row under the naive list, two optimized;
cache look-ups are spans with their result."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from perflab.recorder import new_request_id, traceparent_for
from perflab.services import ServiceHandle


def trace_of(svc: ServiceHandle, path: str) -> list[dict]:
    """Request `path` with a fresh trace id; that trace's spans once its server span is out."""
    rid = new_request_id()
    headers = {"X-Request-ID": rid, "traceparent": str(traceparent_for(rid))}
    assert httpx.get(svc.url + path, headers=headers, timeout=30).status_code == 200
    assert svc.spans_file is not None
    deadline = time.monotonic() + 30
    spans: list[dict] = []
    while time.monotonic() < deadline:
        spans = _read(svc.spans_file, rid)
        if any(s["kind"] == "server" for s in spans):
            break
        time.sleep(0.1)
    return spans


def _read(path: Path, trace_id: str) -> list[dict]:
    if not path.exists():
        return []
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r for r in rows if r["trace_id"] == trace_id]


def sql_spans(spans: list[dict]) -> list[dict]:
    return [s for s in spans if "db.system.name" in s["attributes"]]


def test_naive_list_has_a_sql_span_per_row(naive: ServiceHandle) -> None:
    spans = trace_of(naive, "/products?limit=50")
    sql = sql_spans(spans)
    assert len(sql) > 50, len(sql)
    (server,) = [s for s in spans if s["kind"] == "server"]
    assert all(s["parent_span_id"] == server["span_id"] for s in sql)
    assert all(s["name"].startswith("SELECT ") for s in sql)
    assert not any(s["name"].startswith("BEGIN") for s in spans)


def test_optimized_list_has_at_most_three(optimized: ServiceHandle) -> None:
    sql = sql_spans(trace_of(optimized, "/products?limit=50"))
    assert 1 <= len(sql) <= 3, [s["name"] for s in sql]


def test_cache_lookup_is_a_span_with_its_result(memory: ServiceHandle) -> None:
    first = trace_of(memory, "/products/7")
    second = trace_of(memory, "/products/7")
    (miss,) = [s for s in first if s["name"] == "cache memory"]
    (hit,) = [s for s in second if s["name"] == "cache memory"]
    assert miss["attributes"]["cache.result"] == "miss"
    assert hit["attributes"]["cache.result"] == "hit"
    # On the miss, the loader's SQL runs under the cache span; the hit runs none.
    assert any(s["parent_span_id"] == miss["span_id"] for s in sql_spans(first))
    assert not sql_spans(second)
