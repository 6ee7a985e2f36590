"""The gateway app factory: `uvicorn --factory perflab_services.gateway.main:create_app`.

The gateway is all I/O (it waits on the catalog), so its handlers are `async def` and share one
pooled `httpx.AsyncClient` per worker: no thread per request, no new TCP connection per call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from perflab_services.common.clients import trust_proxies
from perflab_services.common.errors import install_error_handlers
from perflab_services.common.limits import BodySizeLimitMiddleware
from perflab_services.common.logging import make_logger
from perflab_services.common.metrics import ServiceMetrics
from perflab_services.common.middleware import add_observability, fastapi_options
from perflab_services.common.routing import add_routers
from perflab_services.common.watchdog import start_parent_watchdog
from perflab_services.gateway.api.routes import categories, ops, products
from perflab_services.gateway.core.config import Settings, get_settings
from perflab_services.gateway.core.metrics import UpstreamMetrics
from perflab_services.gateway.core.upstream import CatalogClient, UpstreamError


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logger = make_logger(
        settings.service_name,
        settings.log_file,
        settings.log_enabled,
        flush_seconds=settings.log_flush_seconds,
    )
    metrics = ServiceMetrics(settings.service_name) if settings.metrics_enabled else None
    client = CatalogClient(
        settings, metrics=UpstreamMetrics(metrics) if metrics else None, logger=logger
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        start_parent_watchdog()
        logger.info("startup", variant=settings.variant, catalog_url=settings.catalog_url)
        yield
        await client.aclose()
        logger.flush()  # the lines still waiting (common/logging.py)

    app = FastAPI(
        title="perflab gateway",
        version="1.0",
        description="The front door to the catalog: pooling, timeouts, retries, a breaker.",
        lifespan=lifespan,
        **fastapi_options(),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.catalog_client = client

    @app.exception_handler(UpstreamError)
    async def upstream_failed(request: Request, exc: UpstreamError) -> JSONResponse:
        headers = {}
        if exc.retry_after is not None:
            headers["retry-after"] = str(max(1, round(exc.retry_after)))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    install_error_handlers(app)
    add_routers(app, products.router, categories.router, ops.router)  # common/routing.py
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    add_observability(app, settings, logger=logger, metrics=metrics)
    trust_proxies(app, settings.trusted_proxies)  # outermost: every layer sees the real client
    return app
