"""The gateway's client for the catalog: pooling, timeouts, retries with jitter, a breaker.

What is retried, and why:
- a connect error (refused, unreachable, connect timeout), for any method: the request never
  reached the catalog, so sending it again cannot do anything twice;
- a read timeout, a dropped connection, or a 502/503/504 answer, only for idempotent requests:
  GETs, and POSTs that carry an `Idempotency-Key` (the catalog stores a keyed review once, so a
  retry returns the first attempt's review instead of writing a second one). A POST without a
  key that timed out is *not* retried: the catalog may have stored it already.

Waits between attempts grow exponentially with full jitter, so many gateways retrying after the
same hiccup do not hit the catalog in lock-step. The whole call has a budget
(`budget_seconds`): each attempt's timeouts are cut to what is left of it and no retry starts
once it is spent, so a stalled catalog costs a caller at most the budget, and the timeouts it
causes open the breaker. Every attempt's outcome feeds the circuit
breaker; while it is open, calls fail at once with 503 instead of waiting for timeouts.
Errors are exceptions carrying the HTTP status and message the gateway answers with.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import httpx

from perflab_services.common import context
from perflab_services.common.tracing import TracedTransport
from perflab_services.gateway.core.breaker import CircuitBreaker
from perflab_services.gateway.core.config import Settings
from perflab_services.gateway.core.metrics import UpstreamMetrics

RETRYABLE_STATUS = frozenset({502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class UpstreamError(Exception):
    """The catalog could not give an answer: `status` and `detail` are what the gateway says."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    body: bytes
    content_type: str
    retry_after: str | None = None  # the catalog's Retry-After (a 429, a 503): passed on


class CatalogClient:
    """One pooled `httpx.AsyncClient` per worker process, shared by every request."""

    def __init__(
        self, settings: Settings, *, metrics: UpstreamMetrics | None = None, logger: Any = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.logger = logger
        self.breaker = CircuitBreaker(
            settings.breaker_failures,
            settings.breaker_cooldown_seconds,
            on_open=self._opened,
        )
        self.client = httpx.AsyncClient(
            base_url=settings.catalog_url.rstrip("/"),
            timeout=httpx.Timeout(
                connect=settings.connect_timeout,
                read=settings.read_timeout,
                write=settings.read_timeout,
                pool=settings.pool_timeout,
            ),
            limits=httpx.Limits(
                max_connections=settings.max_connections,
                max_keepalive_connections=settings.max_keepalive_connections,
                keepalive_expiry=settings.keepalive_expiry_seconds,
            ),
            trust_env=False,  # a configured URL on this machine: no HTTP_PROXY detour
            # Retries are ours (with backoff and the breaker), not the transport's.
            # Each attempt is a span that passes its traceparent on (common/tracing.py).
            transport=TracedTransport(httpx.AsyncHTTPTransport(retries=0)),
        )

    def _opened(self) -> None:
        if self.metrics is not None:
            self.metrics.breaker_opened.inc()
        if self.logger is not None:
            self.logger.warning(
                "circuit_open",
                upstream=self.settings.catalog_url,
                failures=self.breaker.failures,
                cooldown_s=self.settings.breaker_cooldown_seconds,
            )

    def backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**retry)]."""
        cap = min(self.settings.backoff_max_seconds, self.settings.backoff_base_seconds * 2**retry)
        return random.uniform(0, cap)

    def _count(self, method: str, outcome: str, seconds: float | None) -> None:
        if self.metrics is None:
            return
        self.metrics.attempts.labels(method, outcome).inc()
        if seconds is not None:
            self.metrics.duration.labels(method).observe(seconds)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        content: bytes | None = None,
        content_type: str | None = None,
        idempotency_key: str | None = None,
        authorization: str | None = None,
        forwarded_for: str | None = None,
    ) -> UpstreamResponse:
        ctx = context.get()
        headers = {"accept": "application/json"}
        if forwarded_for:
            # Who the caller is, for the catalog's per-client limits; replaces (never extends)
            # whatever the caller claimed, which services/common/clients.py already weighed.
            headers["x-forwarded-for"] = forwarded_for
        if ctx is not None:
            headers["x-request-id"] = ctx.request_id  # one id in both services' logs
        if idempotency_key:
            headers["idempotency-key"] = idempotency_key
        if authorization:
            headers["authorization"] = authorization  # the catalog checks roles, not the gateway
        if content_type:
            headers["content-type"] = content_type
        safe_to_repeat = method in IDEMPOTENT_METHODS or bool(idempotency_key)
        attempts = self.settings.retries + 1
        upstream_seconds = 0.0
        failure: UpstreamError | None = None
        last_response: UpstreamResponse | None = None
        sent = 0  # attempts that went out (the breaker may stop one before it does)
        deadline = perf_counter() + self.settings.budget_seconds
        try:
            for attempt in range(attempts):
                if attempt:
                    pause = self.backoff(attempt - 1)
                    if perf_counter() + pause >= deadline:
                        break  # no time left for another attempt: answer with what we have
                    await asyncio.sleep(pause)
                if not self.breaker.allow():
                    self._count(method, "circuit_open", None)
                    wait = self.breaker.retry_after()
                    failure = UpstreamError(
                        503,
                        "catalog unavailable: circuit open after repeated failures, "
                        f"next try in {wait:.1f} s",
                        retry_after=wait,
                    )
                    break
                if attempt and self.metrics is not None:
                    self.metrics.retries.labels(method).inc()
                sent += 1
                t0 = perf_counter()
                timeout = self._timeout(deadline - t0)
                try:
                    resp = await self.client.request(
                        method,
                        path,
                        params=params,
                        content=content,
                        headers=headers,
                        timeout=timeout,
                    )
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    upstream_seconds += perf_counter() - t0
                    self._count(method, "connect_error", perf_counter() - t0)
                    self.breaker.failure()
                    failure = UpstreamError(
                        503,
                        f"catalog unavailable: cannot connect to {self.settings.catalog_url} "
                        f"({type(exc).__name__})",
                    )
                    continue  # never reached the catalog: safe to retry for any method
                except httpx.PoolTimeout:
                    self.breaker.release()
                    upstream_seconds += perf_counter() - t0
                    self._count(method, "pool_timeout", perf_counter() - t0)
                    failure = UpstreamError(
                        503, "gateway busy: no free connection to the catalog, try again"
                    )
                    break  # our own limit, not the catalog's fault: no breaker, no retry
                except httpx.TimeoutException:
                    upstream_seconds += perf_counter() - t0
                    self._count(method, "timeout", perf_counter() - t0)
                    self.breaker.failure()
                    failure = UpstreamError(
                        504, f"catalog timeout: no answer within {timeout.read:.3g} s"
                    )
                    if safe_to_repeat:
                        continue
                    break
                except httpx.TransportError as exc:
                    upstream_seconds += perf_counter() - t0
                    self._count(method, "error", perf_counter() - t0)
                    self.breaker.failure()
                    failure = UpstreamError(
                        502, f"bad gateway: the catalog connection failed ({type(exc).__name__})"
                    )
                    if safe_to_repeat:
                        continue
                    break
                elapsed = perf_counter() - t0
                upstream_seconds += elapsed
                self._count(method, f"{resp.status_code // 100}xx", elapsed)
                last_response = UpstreamResponse(
                    resp.status_code,
                    resp.content,
                    resp.headers.get("content-type", "application/json"),
                    resp.headers.get("retry-after"),
                )
                if resp.status_code >= 500:
                    self.breaker.failure()
                    if resp.status_code in RETRYABLE_STATUS and safe_to_repeat:
                        failure = None
                        continue
                else:
                    self.breaker.success()
                return last_response
        except BaseException:  # cancelled (client gone) or a bug: never leave a probe pending
            self.breaker.release()
            raise
        finally:
            if ctx is not None:
                ctx.timings["upstream"] = ctx.timings.get("upstream", 0.0) + upstream_seconds
                ctx.extra["upstream_attempts"] = sent
                ctx.extra["upstream_ms"] = round(upstream_seconds * 1000, 3)
                if last_response is not None:
                    ctx.extra["upstream_status"] = last_response.status
        if last_response is not None and failure is None:
            return last_response  # a 5xx after the last retry: pass the catalog's answer on
        assert failure is not None
        if ctx is not None:
            ctx.extra["upstream_error"] = failure.detail
        raise failure

    def _timeout(self, remaining: float) -> httpx.Timeout:
        """The configured timeouts, none longer than what is left of the call's budget."""
        left = max(remaining, 0.001)
        s = self.settings
        return httpx.Timeout(
            connect=min(s.connect_timeout, left),
            read=min(s.read_timeout, left),
            write=min(s.read_timeout, left),
            pool=min(s.pool_timeout, left),
        )

    async def aclose(self) -> None:
        await self.client.aclose()
