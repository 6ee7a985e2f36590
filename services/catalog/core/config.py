"""The catalog's one typed `Settings`, read from `CATALOG_*` environment variables.

`DATABASE_URL` and `REDIS_URL` are also read unprefixed, the names most tools and hosting
platforms use, so pointing the lab at PostgreSQL or an external Redis is one variable each.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///data/catalog.sqlite3"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CATALOG_", extra="ignore")

    database_url: str = Field(
        DEFAULT_DATABASE_URL, validation_alias=AliasChoices("CATALOG_DATABASE_URL", "DATABASE_URL")
    )
    redis_url: str | None = Field(
        None, validation_alias=AliasChoices("CATALOG_REDIS_URL", "REDIS_URL")
    )
    # How long a Redis call (connect, or one reply) may take before the cache and the rate
    # limiter give up on it and fail open for a second (core/cache.py `redis_client`).
    redis_timeout_seconds: float = Field(0.25, gt=0, le=30)
    # How long a Redis cache miss waits for another worker that holds the key's load lock
    # before it loads the value itself (single-flight across processes, core/cache.py).
    cache_lock_wait_seconds: float = Field(2.0, gt=0, le=120)
    queries: Literal["naive", "optimized"] = "optimized"
    cache: Literal["none", "memory", "redis"] = "none"
    # Every write path invalidates what it changes (service.py), so the TTL only bounds how long
    # a change made behind the service's back stays unseen; a product page changes rarely.
    # (At 30 s, keys read less than twice a minute kept expiring: under the lab's traffic that
    # capped the hit ratio near 0.65 however long the cache ran.)
    cache_ttl_seconds: float = Field(300.0, gt=0)
    cache_max_entries: int = Field(10_000, gt=0)
    manage_indexes: bool = True
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
    service_name: str = "catalog"
    # --- plug-ins (core/plugins.py): "file.py:Name" or "module:Name", run instead of ours ----
    # The classroom's checks run a student's class inside the real service this way.
    repository_plugin: str | None = None  # a Repository class, built with no arguments
    cache_plugin: str | None = None  # a Cache class, built as Name(ttl=..., max_entries=...)
    middleware_plugin: str | None = None  # a pure ASGI middleware class, built as Name(app)
    review_model_plugin: str | None = None  # a pydantic model: POST /products/{id}/reviews' body

    # --- security (services/catalog/core/security.py, ratelimit.py, limits.py) ---------------
    # Reviews need an `editor` token when on; off lets an experiment measure writes without
    # auth. Reads are always anonymous-or-viewer; /admin/* always needs an `admin` token.
    auth_enabled: bool = True
    # HS256 key. Unset: a random key generated once per install in `<secrets_dir>/.jwt-secret`.
    jwt_secret: SecretStr | None = None
    jwt_issuer: str = "perflab-catalog"
    jwt_audience: str = "perflab"
    jwt_ttl_seconds: int = Field(900, ge=10, le=86_400)
    # Where per-install secrets (JWT key, demo passwords) live; the lab points it at data/.
    secrets_dir: str = "data"
    # Token bucket per client (token subject, else IP), in Redis when `redis_url` is set.
    rate_limit_enabled: bool = True
    rate_limit_per_second: float = Field(50.0, gt=0)
    rate_limit_burst: int = Field(100, ge=1)
    # Logins (`POST /auth/token`, tens of ms of scrypt each) have buckets of their own, per
    # client and per username, checked before any hashing; on with the rate limit.
    login_rate_per_second: float = Field(0.5, gt=0)
    login_burst: int = Field(10, ge=1)
    # Request bodies above this many bytes get a 413 before the app reads them.
    max_body_bytes: int = Field(64 * 1024, ge=1)
    # Proxies allowed to name the client with X-Forwarded-For (addresses or networks, comma-
    # separated; "" trusts none): services/common/clients.py.
    trusted_proxies: str = ""

    @property
    def variant(self) -> str:
        return f"queries={self.queries},cache={self.cache}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
