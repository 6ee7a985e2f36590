"""`OTEL_EXPORTER_OTLP_ENDPOINT` sends a service's spans to an OTLP/HTTP collector: a real
receiver on loopback that decodes what it gets with the OpenTelemetry protobuf definitions."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from perflab.lab import service_env
from perflab.recorder import new_request_id, traceparent_for
from perflab.services import start_service

pytestmark = pytest.mark.slow  # starts a service


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[ExportTraceServiceRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/traces":
            msg = ExportTraceServiceRequest()
            msg.ParseFromString(body)
            self.received.append(msg)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


def test_spans_go_to_an_otlp_http_collector(database_url: str, tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **service_env("catalog", {"database_url": database_url}),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    svc = start_service("catalog", env, tmp_path, label="otlp-catalog")
    rid = new_request_id()
    try:
        headers = {"X-Request-ID": rid, "traceparent": str(traceparent_for(rid))}
        assert httpx.get(f"{svc.url}/products/4", headers=headers, timeout=10).status_code == 200
        deadline = time.monotonic() + 30
        names: set[str] = set()
        while time.monotonic() < deadline and "GET /products/{product_id}" not in names:
            names = {
                span.name
                for msg in list(_Receiver.received)
                for rs in msg.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
                if span.trace_id.hex() == rid
            }
            time.sleep(0.1)
    finally:
        svc.stop()
        server.shutdown()
    assert "GET /products/{product_id}" in names, names
    assert any(n.startswith("SELECT ") for n in names), names
    services = {
        attr.value.string_value
        for msg in _Receiver.received
        for rs in msg.resource_spans
        for attr in rs.resource.attributes
        if attr.key == "service.name"
    }
    assert services == {"catalog"}
