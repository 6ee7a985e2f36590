"""Wire the catalog's defences and fault injection into an app, from `Settings`.

Middleware order, outermost first: observability (so every refusal is logged and counted) ->
body size limit -> rate limit -> fault injection -> the app. A refused request therefore costs
no database work, and injected faults never hide the limits.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from perflab_services.catalog.api.security import principal_from_scope
from perflab_services.catalog.core.faults import FaultMiddleware, Faults
from perflab_services.catalog.core.ratelimit import LoginThrottle, RateLimiter, RateLimitMiddleware
from perflab_services.catalog.core.security import Authenticator, InvalidToken
from perflab_services.common.clients import client_host
from perflab_services.common.errors import install_error_handlers
from perflab_services.common.limits import BodySizeLimitMiddleware


def client_identifier(auth: Authenticator):
    """`user:<sub>` for a valid token (so users behind one NAT don't share), else `ip:<peer>`."""

    def identify(scope: dict) -> str:
        try:
            who = principal_from_scope(scope, auth)
        except InvalidToken:
            who = None
        if who is not None and not who.anonymous:
            return f"user:{who.subject}"
        return f"ip:{client_host(scope)}"

    return identify


def install(app: FastAPI, settings: Any, *, logger: Any, metrics: Any, faults: Faults) -> None:
    """Add auth state and the protective middlewares (call before the observability one)."""
    install_error_handlers(app)
    auth = Authenticator.from_settings(settings)
    app.state.auth = auth
    app.state.faults = faults
    app.state.login_throttle = None
    app.add_middleware(FaultMiddleware, faults=faults)
    if settings.rate_limit_enabled:
        counter = None
        if metrics is not None:
            from prometheus_client import Counter

            counter = Counter(
                "rate_limited",
                "Requests refused with 429 by the rate limiter.",
                registry=metrics.registry,
            )
        limiter = RateLimiter(
            settings.rate_limit_per_second,
            settings.rate_limit_burst,
            redis_url=settings.redis_url,
            redis_timeout=settings.redis_timeout_seconds,
            logger=logger,
        )
        app.state.rate_limiter = limiter
        app.state.login_throttle = LoginThrottle(
            RateLimiter(
                settings.login_rate_per_second,
                settings.login_burst,
                redis_url=settings.redis_url,
                redis_timeout=settings.redis_timeout_seconds,
                logger=logger,
            )
        )
        app.add_middleware(
            RateLimitMiddleware,
            limiter=limiter,
            identify=client_identifier(auth),
            counter=counter,
        )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
