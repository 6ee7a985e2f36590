"""The gateway's one typed `Settings`, read from `GATEWAY_*` environment variables.

The defaults are what a careful service would choose: a short connect timeout (a dead host is
known fast), a read timeout longer than the catalog's slow path, two retries with backoff, and a
breaker that opens after five failures in a row.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    catalog_url: str = "http://127.0.0.1:8000"
    # Timeouts, seconds: connecting, waiting for a response, and waiting for a pooled connection.
    # A stalled catalog (stopped, or its event loop blocked) accepts connections and never
    # answers: the read timeout is what turns that into failures the breaker counts, so it is
    # a few times the catalog's slow path, not "as long as it takes".
    connect_timeout: float = Field(1.0, gt=0)
    read_timeout: float = Field(3.0, gt=0)
    pool_timeout: float = Field(2.0, gt=0)
    # The whole call, all attempts and backoff included: no retry starts that cannot finish
    # within it, and each attempt's timeouts are cut to what is left of it.
    budget_seconds: float = Field(5.0, gt=0)
    max_connections: int = Field(100, gt=0)
    max_keepalive_connections: int = Field(20, ge=0)
    # Below uvicorn's keep-alive timeout (5 s): the gateway drops an idle connection before the
    # catalog closes it, so a request is never sent on a connection that is being closed.
    keepalive_expiry_seconds: float = Field(4.0, ge=0)
    # Retries after the first attempt; the wait before retry k is uniform in
    # [0, min(backoff_max, backoff_base * 2**k)] ("full jitter").
    retries: int = Field(2, ge=0, le=10)
    backoff_base_seconds: float = Field(0.05, ge=0)
    backoff_max_seconds: float = Field(1.0, ge=0)
    # The circuit breaker: open after this many failed attempts in a row, try again after.
    breaker_failures: int = Field(5, gt=0)
    breaker_cooldown_seconds: float = Field(2.0, gt=0)
    # Request bodies above this many bytes get a 413, counted while they stream in.
    max_body_bytes: int = Field(64 * 1024, ge=1)
    # Proxies allowed to name the client with X-Forwarded-For ("" trusts none):
    # services/common/clients.py. The gateway itself names its client to the catalog.
    trusted_proxies: str = ""
    log_enabled: bool = True
    log_file: str | None = None
    # 0: each log line is written as its request ends. > 0: lines are written in batches, at
    # most this long after the first (common/logging.py says what that saves, and costs).
    log_flush_seconds: float = Field(0.0, ge=0, le=3600)
    metrics_enabled: bool = True
    headers_enabled: bool = True
    # OpenTelemetry traces (common/tracing.py): off, a ratio of traces, or always; where the
    # spans go as JSON lines (the lab sets it; OTEL_EXPORTER_OTLP_* also send them to OTLP).
    tracing: Literal["off", "ratio", "always"] = "off"
    trace_ratio: float = Field(0.1, ge=0, le=1)
    spans_file: str | None = None
    service_name: str = "gateway"

    @field_validator("catalog_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"GATEWAY_CATALOG_URL must start with http:// or https://, got {value!r}"
            )
        return value.rstrip("/")

    @property
    def variant(self) -> str:
        return f"retries={self.retries},breaker={self.breaker_failures}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
