"""Pure ASGI middleware: request id, timing headers, the canonical log line, metrics.

It is pure ASGI (not Starlette's `BaseHTTPMiddleware`) because it sits on every request of a
service whose speed is being measured: it wraps `send` to add headers and does no extra task
switching or body buffering. The harness measures what it costs (benchmarks, and the lab's
profiler: `perflab.profiling`), so it does the least per request that still gives every
feature: one pass over the request headers, metric series looked up once per route
(`ServiceMetrics.observe`), the log line rendered by orjson (`common/logging.py`).
"""

from __future__ import annotations

import inspect
import traceback
from time import perf_counter
from typing import Any, Literal, Protocol

from fastapi import FastAPI

from perflab_services.common import context, profiler, tracing
from perflab_services.common.asgi import ASGIApp, Message, Receive, Scope, Send, header, send_json
from perflab_services.common.logging import Logger
from perflab_services.common.metrics import ServiceMetrics


class ObservabilitySettings(Protocol):
    """What `add_observability` reads from a service's `Settings` (catalog and gateway alike)."""

    @property
    def variant(self) -> str: ...

    headers_enabled: bool
    log_enabled: bool
    # Tracing (common/tracing.py `TracingSettings`).
    service_name: str
    tracing: Literal["off", "ratio", "always"]
    trace_ratio: float
    spans_file: str | None


def route_template(scope: Scope) -> str:
    """The matched route's path template; one label for every unmatched path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if path else "<unmatched>"


class ObservabilityMiddleware:
    """Adds X-Request-ID, Server-Timing, X-DB-Queries and X-Cache; logs and counts each request.

    `headers`, `log` and `metrics` switch the three concerns separately so the lab can measure
    each one's cost. Any exception that escapes the app becomes a JSON 500 with the request id
    (never a traceback in the body); the traceback goes to the log.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        logger: Logger,
        metrics: ServiceMetrics | None,
        variant: str,
        headers: bool = True,
        log: bool = True,
    ) -> None:
        self.app = app
        self.logger = logger
        self.metrics = metrics
        self.variant = variant
        self.headers = headers
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = context.RequestContext(context.new_request_id(header(scope, b"x-request-id")))
        token = context.current.set(ctx)
        start = perf_counter()
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", ctx.request_id.encode()))
                if self.headers:
                    headers += _timing_headers(ctx, perf_counter() - start)
                message["headers"] = headers
            await send(message)

        error: str | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # the last line of defence: a JSON 500, never a traceback
            error = "".join(traceback.format_exception(exc))
            if not started:
                body = {"detail": "internal server error", "request_id": ctx.request_id}
                await send_json(send_wrapper, 500, body)
        finally:
            seconds = perf_counter() - start
            route = route_template(scope)
            method = scope.get("method", "")
            if self.metrics is not None:
                self.metrics.observe(method, route, status, seconds, ctx.db_queries)
                if ctx.cache is not None:
                    self.metrics.count_cache(ctx.cache_backend or "none", ctx.cache)
            if self.log:
                fields: dict[str, Any] = {
                    "method": method,
                    "path": scope.get("path", ""),
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                    "db_queries": ctx.db_queries,
                    "db_ms": round(ctx.db_seconds * 1000, 3),
                    "cache": ctx.cache,
                    "cache_ms": round(ctx.cache_seconds * 1000, 3),
                    "request_id": ctx.request_id,
                    "variant": self.variant,
                }
                if ctx.extra:
                    fields.update(ctx.extra)
                if error:
                    self.logger.error("request", error=error, **fields)
                else:
                    self.logger.info("request", **fields)
            context.current.reset(token)


def _timing_headers(ctx: context.RequestContext, app_seconds: float) -> list[tuple[bytes, bytes]]:
    """Server-Timing (db, cache, any extra timings, the whole app), X-DB-Queries, X-Cache."""
    timing = f"db;dur={ctx.db_seconds * 1000:.3f}, cache;dur={ctx.cache_seconds * 1000:.3f}"
    for name, sec in ctx.timings.items():
        timing += f", {name};dur={sec * 1000:.3f}"
    timing += f", app;dur={app_seconds * 1000:.3f}"
    out = [(b"server-timing", timing.encode()), (b"x-db-queries", str(ctx.db_queries).encode())]
    if ctx.cache is not None:
        out.append((b"x-cache", ctx.cache.encode()))
    return out


def fastapi_options() -> dict[str, Any]:
    """`FastAPI(**fastapi_options())`: FastAPI's own OpenTelemetry instrumentation switched off.

    The services trace, count and log requests themselves (this module, common/tracing.py),
    so FastAPI's built-in spans and metrics (FastAPI 0.165+) would only duplicate them if a
    global provider were ever set; and off, it skips a look-up of three global OpenTelemetry
    providers that it otherwise makes on every request (the lab's profiler showed it on the
    cached read). Older FastAPI has no such switch and no such cost.
    """
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def add_observability(
    app: Any,
    settings: ObservabilitySettings,
    *,
    logger: Logger,
    metrics: ServiceMetrics | None,
) -> None:
    """Install `ObservabilityMiddleware` from a service's settings (variant, headers, log).

    Also installs the in-process profiling hook when the lab asked for it
    (`PERFLAB_PROFILE_DIR`; `perflab_services.common.profiler`): profiling is observability;
    and the tracing middleware inside this one (`common/tracing.py`; this one decides the
    request id, which becomes the trace id).
    """
    tracing.install(app, settings)
    app.add_middleware(
        ObservabilityMiddleware,
        logger=logger,
        metrics=metrics,
        variant=settings.variant,
        headers=settings.headers_enabled,
        log=settings.log_enabled,
    )
    profiler.install_from_env()
