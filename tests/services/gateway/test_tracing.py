"""One request through the gateway is one trace: spans from both services, correctly parented,
its trace id the request id recorded by the client and written on both services' log lines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from perflab.recorder import new_request_id, traceparent_for
from perflab.services import ServiceHandle


def spans_of(path: Path, trace_id: str, count: int, timeout: float = 30.0) -> list[dict]:
    """The spans of one trace in a service's span file, waiting for `count` of them."""
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            found = [s for s in lines if s["trace_id"] == trace_id]
            if len(found) >= count:
                break
        time.sleep(0.1)
    return found


def test_gateway_request_is_one_trace_across_both_services(
    gateway: ServiceHandle, catalog: ServiceHandle, log_lines
) -> None:
    rid = new_request_id()
    headers = {"X-Request-ID": rid, "traceparent": str(traceparent_for(rid))}
    resp = httpx.get(f"{gateway.url}/products/3", headers=headers, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == rid

    assert gateway.spans_file is not None and catalog.spans_file is not None
    gw = spans_of(gateway.spans_file, rid, 2)
    cat = spans_of(catalog.spans_file, rid, 2)
    by_kind = {(s["service"], s["kind"]): s for s in gw + cat}
    gw_server = by_kind[("gateway", "server")]
    gw_client = by_kind[("gateway", "client")]
    cat_server = by_kind[("catalog", "server")]
    # The gateway's server span is the child of the client's (the load generator's) span id.
    assert gw_server["parent_span_id"] == rid[16:]
    assert gw_server["name"] == "GET /products/{product_id}"
    assert gw_client["parent_span_id"] == gw_server["span_id"]
    assert cat_server["parent_span_id"] == gw_client["span_id"]
    sql = [s for s in cat if "db.system.name" in s["attributes"]]
    assert sql and all(s["parent_span_id"] != cat_server["parent_span_id"] for s in sql)
    # Children start and end inside their parents.
    assert gw_server["start_unix_nano"] <= gw_client["start_unix_nano"]
    assert gw_client["end_unix_nano"] <= gw_server["end_unix_nano"]
    assert cat_server["duration_ms"] <= gw_client["duration_ms"]
    for s in gw + cat:
        assert set(s) >= {
            "trace_id", "span_id", "parent_span_id", "name", "service", "kind",
            "start_unix_nano", "end_unix_nano", "duration_ms", "status", "attributes",
        }  # fmt: skip

    # Both services' log lines carry the request id, which is the trace id, and their span id.
    (gw_log,) = log_lines(gateway.log_file, rid)
    (cat_log,) = log_lines(catalog.log_file, rid)
    assert gw_log["trace_id"] == cat_log["trace_id"] == rid
    assert gw_log["span_id"] == gw_server["span_id"]
    assert cat_log["span_id"] == cat_server["span_id"]


def test_a_traceparent_alone_names_the_request(gateway: ServiceHandle) -> None:
    """An OpenTelemetry client that sends only `traceparent`: its trace id becomes the request
    id (response header, log) instead of a new random one."""
    trace_id = new_request_id()
    tp = f"00-{trace_id}-00f067aa0ba902b7-01"
    resp = httpx.get(f"{gateway.url}/products/2", headers={"traceparent": tp}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == trace_id
    assert gateway.spans_file is not None
    (server,) = [s for s in spans_of(gateway.spans_file, trace_id, 1) if s["kind"] == "server"]
    assert server["parent_span_id"] == "00f067aa0ba902b7"


def test_a_malformed_traceparent_is_ignored(gateway: ServiceHandle) -> None:
    resp = httpx.get(
        f"{gateway.url}/products/2", headers={"traceparent": "00-nothex-zz-01"}, timeout=10
    )
    assert resp.status_code == 200
    assert len(resp.headers["x-request-id"]) == 32
