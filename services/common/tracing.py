"""OpenTelemetry traces: a server span per request, child spans for SQL, cache and upstream calls.

Why traces, with logs and metrics already there: a log line says a request took 40 ms and ran
41 SQL statements; its trace shows the 41 statements one after the other, under the request,
under the gateway's call that caused it. The lab joins all of it on one key: **the request id is
the trace id**. The load generator sends `X-Request-ID: <32 hex digits>` and a W3C `traceparent`
with the same trace id; the server span takes its trace id from there (or, with no
`traceparent`, from the request id: `_RequestIdGenerator`), and the gateway passes a
`traceparent` on to the catalog. So a sample, its log lines, its response headers and its spans
all carry the same 32 hex digits.

What it costs is measured (the `tracing` experiment; `make bench`), so it is built to be cheap:

- a pure ASGI middleware (no `BaseHTTPMiddleware`), one pass over the request headers;
- SQL spans from the SQLAlchemy cursor events `core/db.py` already listens to (no second
  listener), cache spans from one wrapper around the cache, upstream spans from one httpx
  transport wrapper;
- spans leave the request path at once: the SDK's `BatchSpanProcessor` queues them and a
  background thread hands batches to `JsonLinesExporter`, which writes each batch with one
  `write` to the service's span file (JSON lines; the lab collects it into the run folder as
  `spans.jsonl`);
- sampling is a setting: `off` (no tracer at all: nothing is installed, nothing is paid),
  `ratio` (a fraction of traces, decided on the trace id, so the gateway and the catalog keep
  the same traces) and `always`.

The standard `OTEL_EXPORTER_OTLP_*` variables also send the spans to any OTLP/HTTP collector
(Jaeger, Tempo, the OpenTelemetry collector) when `opentelemetry-exporter-otlp-proto-http` is
installed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceFlags

from perflab_services.common import context

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Mode = Literal["off", "ratio", "always"]

# How often the batch processor writes spans out: an interrupted run loses at most this much.
SCHEDULE_DELAY_MS = 500
# SQL text on a span is cut here: enough to tell statements apart, not a copy of the query log.
MAX_STATEMENT = 160


# Scrapes and health checks (the lab's scraper, Prometheus: once a second each) are not traced:
# they would outnumber the traces of a slow load, and nobody asks where their time went.
UNTRACED = frozenset({"/metrics", "/healthz"})


class TracingSettings(Protocol):
    """What tracing reads from a service's `Settings` (catalog and gateway alike)."""

    service_name: str
    tracing: Mode
    trace_ratio: float
    spans_file: str | None


_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None


def tracer() -> trace.Tracer | None:
    """The service's tracer, or None when tracing is off (every hook then does nothing)."""
    return _tracer


# --- ids: the request id is the trace id -----------------------------------------------------
_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parse_traceparent(value: bytes) -> SpanContext | None:
    """A W3C `traceparent` (version 00) as a remote span context; None when malformed."""
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None:
        return None
    trace_id, span_id = int(m[1], 16), int(m[2], 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(m[3], 16)))


def traceparent(span_context: SpanContext) -> str:
    """The `traceparent` header that makes `span_context` the parent of the receiver's span."""
    flags = int(span_context.trace_flags) & 1
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{flags:02x}"


def trace_id_of(request_id: str) -> int:
    """The trace id a request id names: its value when it is 32 hex digits, else 0 (none)."""
    if len(request_id) != 32:
        return 0
    try:
        return int(request_id, 16)
    except ValueError:
        return 0


class _RequestIdGenerator(RandomIdGenerator):
    """New traces take the request's id as trace id, so the two are one key everywhere."""

    def generate_trace_id(self) -> int:
        ctx = context.get()
        if ctx is not None and (tid := trace_id_of(ctx.request_id)):
            return tid
        return super().generate_trace_id()

    def is_trace_id_random(self) -> bool:
        return False  # a caller's id is not guaranteed random


# --- the exporter: one JSON line per span ----------------------------------------------------
def span_record(span: ReadableSpan, service: str) -> dict[str, Any]:
    """A finished span as the lab's `spans.jsonl` stores it (flat, pandas-friendly)."""
    sc = span.get_span_context()
    start, end = span.start_time or 0, span.end_time or 0
    return {
        "trace_id": f"{sc.trace_id:032x}" if sc else "",
        "span_id": f"{sc.span_id:016x}" if sc else "",
        "parent_span_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name,
        "service": service,
        "kind": span.kind.name.lower(),
        "start_unix_nano": start,
        "end_unix_nano": end,
        "duration_ms": round((end - start) / 1e6, 4),
        "status": span.status.status_code.name.lower(),
        "attributes": dict(span.attributes or {}),
    }


class JsonLinesExporter(SpanExporter):
    """Appends each batch of spans to a file as JSON lines, with one unbuffered `write`.

    With several uvicorn workers every worker appends to the same file: the file is opened with
    O_APPEND and a batch is one `write`, so lines of two workers never interleave.
    """

    def __init__(self, path: str | os.PathLike[str], service: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.service = service
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._fd is None:
            return SpanExportResult.FAILURE
        data = b"".join(
            orjson.dumps(span_record(s, self.service), option=orjson.OPT_APPEND_NEWLINE)
            for s in spans
        )
        try:
            os.write(self._fd, data)
        except OSError:
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _sampler(mode: Mode, ratio: float) -> Sampler:
    if mode == "always":
        return ALWAYS_ON
    # Decided on the trace id: the catalog behind a gateway decides as the gateway did. A caller
    # that says "sampled" is followed; one that says "not sampled" (the load generator, which
    # records no spans of its own) leaves the decision to us.
    by_id = TraceIdRatioBased(ratio)
    return ParentBased(root=by_id, remote_parent_not_sampled=by_id)


def _otlp_processor() -> BatchSpanProcessor | None:
    """Spans to an OTLP/HTTP collector too, when the standard OTEL_* variables name one."""
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter,
        )
    except ImportError:
        return None
    return BatchSpanProcessor(OTLPSpanExporter())


def configure(settings: TracingSettings) -> trace.Tracer | None:
    """Set up this process's tracer from the service's settings (None when tracing is off)."""
    global _tracer, _provider
    if _provider is not None:  # a second app in one process (tests): start afresh
        _provider.shutdown()
        _provider = _tracer = None
    if settings.tracing == "off":
        return None
    provider = TracerProvider(
        sampler=_sampler(settings.tracing, settings.trace_ratio),
        resource=Resource.create({"service.name": settings.service_name}),
        id_generator=_RequestIdGenerator(),
    )
    if settings.spans_file:
        exporter = JsonLinesExporter(settings.spans_file, settings.service_name)
        provider.add_span_processor(
            BatchSpanProcessor(exporter, schedule_delay_millis=SCHEDULE_DELAY_MS)
        )
    if (otlp := _otlp_processor()) is not None:
        provider.add_span_processor(otlp)
    _provider = provider
    _tracer = provider.get_tracer("perflab")
    return _tracer


def shutdown() -> None:
    """Write out every queued span (the service is stopping)."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


# --- the server span ---------------------------------------------------------------------------
class TracingMiddleware:
    """One SERVER span per HTTP request, the parent of every span the request makes.

    It sits inside `ObservabilityMiddleware`, which has decided the request id by then; a
    request that came with a `traceparent` and no `X-Request-ID` takes the trace id as its
    request id (so the response header and the log line name the trace). The span ends when the
    last byte of the response is handed to the server, not when the app returns: what the app
    does after that (metrics, the log line) is not time the client waited for.
    """

    def __init__(self, app: ASGIApp, *, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, self._flush_at_shutdown(send))
            return
        if scope["type"] != "http" or scope.get("path") in UNTRACED:
            await self.app(scope, receive, send)
            return
        incoming: bytes | None = None
        has_request_id = False
        for key, value in scope.get("headers", ()):
            if key == b"traceparent":
                incoming = value
            elif key == b"x-request-id":
                has_request_id = True
        ctx = context.get()
        parent = None
        if incoming is not None and (remote := parse_traceparent(incoming)) is not None:
            parent = trace.set_span_in_context(NonRecordingSpan(remote))
            if ctx is not None and not has_request_id:
                ctx.request_id = f"{remote.trace_id:032x}"
        method = scope.get("method", "")
        span = self.tracer.start_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope.get("path", "")},
        )
        sc = span.get_span_context()
        if ctx is not None:
            ctx.extra["trace_id"] = f"{sc.trace_id:032x}"
            ctx.extra["span_id"] = f"{sc.span_id:016x}"
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        status = 500
        ended = False

        def finish() -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                finish()

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            finish()
            otel_context.detach(token)

    @staticmethod
    def _flush_at_shutdown(send: Send) -> Send:
        """Write out the queued spans when the server shuts the app down (not only at exit:
        a stopped service's last spans are in its file before the process is gone)."""

        async def wrapped(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                shutdown()
            await send(message)

        return wrapped


def install(app: Any, settings: TracingSettings) -> None:
    """Configure tracing from `settings` and add the server-span middleware (unless off)."""
    t = configure(settings)
    if t is not None:
        app.add_middleware(TracingMiddleware, tracer=t)


# --- child spans ---------------------------------------------------------------------------------
def _in_request() -> bool:
    """Child spans only under a recording request span (start-up SQL makes no traces)."""
    return trace.get_current_span().is_recording()


_VERB = re.compile(r"\s*(\w+)")
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.I)


def sql_span_name(statement: str) -> str:
    """`SELECT products`: the verb and the first table, the usual name of a database span."""
    verb = _VERB.match(statement)
    if verb is None:
        return "SQL"
    table = _TABLE.search(statement, verb.end() if verb[1].upper() != "UPDATE" else 0)
    return f"{verb[1].upper()} {table[1]}" if table else verb[1].upper()


def start_sql_span(statement: str, system: str) -> trace.Span | None:
    """A CLIENT span for one SQL statement (ended by the caller), or None when not traced."""
    t = _tracer
    if t is None or statement.startswith("BEGIN") or not _in_request():
        return None
    return t.start_span(
        sql_span_name(statement),
        kind=SpanKind.CLIENT,
        attributes={"db.system.name": system, "db.query.text": statement[:MAX_STATEMENT]},
    )


def fail(span: trace.Span, exc: BaseException) -> None:
    """End `span` as failed with `exc`."""
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    span.end()


@contextmanager
def span(name: str, kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> Iterator[Any]:
    """A child span around a block (a no-op when not traced); yields the span or None."""
    t = _tracer
    if t is None or not _in_request():
        yield None
        return
    with t.start_as_current_span(name, kind=kind, attributes=attributes) as s:
        yield s


class TracedCache:
    """Wraps a cache (catalog `core/cache.py`) so each look-up is a span with its result and
    the cache's own time (`cache.duration_ms`).

    On a miss the loader's SQL spans sit under the cache span: cache-aside, seen as it runs.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.kind = getattr(inner, "kind", "cache")

    async def get_or_load(self, key: str, field: str, loader: Callable[[], bytes]) -> bytes:
        if _tracer is None or not _in_request():
            return await self.inner.get_or_load(key, field, loader)  # type: ignore[no-any-return]
        ctx = context.get()
        before = ctx.cache_seconds if ctx is not None else 0.0
        with _tracer.start_as_current_span(
            f"cache {self.kind}", attributes={"cache.key": f"{key}:{field}"}
        ) as s:
            value = await self.inner.get_or_load(key, field, loader)
            if ctx is not None:
                if ctx.cache is not None:
                    s.set_attribute("cache.result", ctx.cache)
                # The cache's own time (look-up, store), as the cache measured it: the span
                # also holds the loader on a miss, and its wait for a thread.
                s.set_attribute("cache.duration_ms", round((ctx.cache_seconds - before) * 1000, 4))
            return value  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's `traceparent` to an outgoing request's headers (when traced)."""
    current = trace.get_current_span().get_span_context()
    if current.is_valid:
        headers["traceparent"] = traceparent(current)


class TracedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that makes each attempt a CLIENT span and sends its `traceparent`.

    The gateway's retries are its own (`gateway/core/upstream.py`), so each attempt is a span of
    its own under the gateway's server span, and the catalog's server span is the child of the
    attempt that reached it. A trace the sampler left out still passes its ids on (flag 00),
    so the catalog keeps or leaves out the same traces.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t = _tracer
        if t is None or not _in_request():
            inject(request.headers)
            return await self.inner.handle_async_request(request)
        with t.start_as_current_span(
            f"{request.method} {request.url.path}",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": request.method,
                "server.address": request.url.host,
                "server.port": request.url.port or 0,
                "url.path": request.url.path,
            },
        ) as s:
            inject(request.headers)
            response = await self.inner.handle_async_request(request)
            s.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                s.set_status(Status(StatusCode.ERROR))
            return response

    async def aclose(self) -> None:
        await self.inner.aclose()


__all__ = [
    "JsonLinesExporter",
    "TracedCache",
    "TracedTransport",
    "TracingMiddleware",
    "configure",
    "fail",
    "inject",
    "install",
    "parse_traceparent",
    "span",
    "span_record",
    "sql_span_name",
    "start_sql_span",
    "trace_id_of",
    "traceparent",
    "tracer",
]
