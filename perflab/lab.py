"""`Lab`: the notebook's and the CLI's handle on everything the lab starts.

```
with Lab() as lab:
    with lab.service("catalog", queries="naive") as svc:
        ...
```
The lab owns the dataset, the embedded Redis (started only when a variant needs it and no
`REDIS_URL` is set) and every service it started; `close()` (or leaving the `with`) stops them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from perflab import paths
from perflab.errors import LabError
from perflab.redis_server import EmbeddedRedis
from perflab.services import ServiceHandle, start_service


def _env_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# What the lab decides for a service unless the caller says otherwise; it lands in the service's
# env, which the run's manifest records for every variant.
# - The lab measures speed, and its load comes from one IP at hundreds of requests/s: the
#   catalog's per-client rate limit (on by default in the service, services/catalog/core/
#   ratelimit.py) would turn a measurement into one of 429s, so lab-started catalogs run
#   without it.
# - Every request traced (the services' own default is off): runs join their spans to the
#   samples; the `tracing` experiment sets it per variant and measures what it costs.
LAB_DEFAULTS: dict[str, dict[str, object]] = {
    "catalog": {"rate_limit_enabled": False, "tracing": "always"},
    "gateway": {"tracing": "always"},
}


def service_env(service: str, settings: Mapping[str, object]) -> dict[str, str]:
    """The environment that starts `service` with a variant's `settings`.

    The one place a variant becomes a service's environment: `queries="naive"` on the catalog
    is `CATALOG_QUERIES=naive`, booleans are `true`/`false`, and the lab's defaults
    (`LAB_DEFAULTS`) apply unless `settings` overrides them. `Lab.service` and the test
    fixtures call it.
    """
    prefix = service.upper().replace("-", "_")
    merged = {**LAB_DEFAULTS.get(service, {}), **settings}
    return {f"{prefix}_{key.upper()}": _env_value(value) for key, value in merged.items()}


def _profile_dir(profile: bool | Path, log_dir: Path) -> Path | None:
    if profile is False:
        return None
    return log_dir / "profiles" if profile is True else Path(profile)


def default_database_url(size: str) -> str:
    return f"sqlite:///{paths.DATA / f'catalog-{size}.sqlite3'}"


class Lab:
    def __init__(
        self,
        size: str = "small",
        seed: int = 42,
        database_url: str | None = None,
        redis_url: str | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.size = size
        self.seed = seed
        self.database_url = (
            database_url or os.environ.get("DATABASE_URL") or (default_database_url(size))
        )
        self._external_redis = redis_url or os.environ.get("REDIS_URL")
        self.log_dir = log_dir or paths.DATA / "logs"
        self.embedded_redis: EmbeddedRedis | None = None
        self.services: list[ServiceHandle] = []
        self.dataset: dict | None = None

    # --- resources ------------------------------------------------------------------------
    def ensure_data(self) -> dict:
        """Generate the seeded dataset unless the database already holds it."""
        from perflab_services.catalog import datagen

        if self.dataset is None:
            self.dataset = datagen.ensure(self.database_url, self.size, self.seed)
        return self.dataset

    @property
    def redis_url(self) -> str:
        """An external Redis if configured, else the lab's own redis-server (started now)."""
        if self._external_redis:
            return self._external_redis
        if self.embedded_redis is None:
            self.embedded_redis = EmbeddedRedis(log_dir=self.log_dir).start()
        return self.embedded_redis.url

    @property
    def redis_source(self) -> str:
        if self._external_redis:
            return "external (REDIS_URL)"
        return f"embedded ({self.embedded_redis.source})" if self.embedded_redis else "none"

    # --- services -------------------------------------------------------------------------
    def catalog_env(self, **settings: object) -> dict[str, str]:
        """The catalog's environment: `service_env` with the lab's database (and its Redis when
        the variant caches in Redis)."""
        full: dict[str, object] = {"database_url": self.database_url, **settings}
        if settings.get("cache") == "redis":
            full["redis_url"] = self.redis_url
        return service_env("catalog", full)

    def service(
        self,
        name: str = "catalog",
        *,
        label: str | None = None,
        port: int | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        tls: bool = False,
        profile: bool | Path = False,
        **settings: object,
    ) -> ServiceHandle:
        """Start a service variant: `lab.service("catalog", queries="naive", cache="redis")`.

        The gateway fronts a catalog: `lab.service("gateway", catalog_url=catalog.url)`. Without
        `catalog_url` the lab starts a catalog for it, with the catalog settings among
        `settings` (`lab.service("gateway", queries="naive", retries=0)`); stopping the gateway
        stops that catalog too.

        `profile=True` (or a folder) attaches the lab's sampling profiler while the service
        runs; `handle.profiles` lists its files (in `profiles/` of the log folder) after `stop()`.
        """
        log_dir = log_dir or self.log_dir
        options: dict[str, Any] = {
            "label": label,
            "port": port,
            "workers": workers,
            "tls": tls,
            "profile": _profile_dir(profile, log_dir),
        }
        if name == "catalog":
            self.ensure_data()
            return self._start(
                name, {**self.catalog_env(**settings), **(env or {})}, log_dir, [], **options
            )
        if name == "gateway" and not settings.get("catalog_url"):
            return self._gateway_with_catalog(settings, env, log_dir, **options)
        return self._start(
            name, {**service_env(name, settings), **(env or {})}, log_dir, [], **options
        )

    def _gateway_with_catalog(
        self,
        settings: dict[str, object],
        env: dict[str, str] | None,
        log_dir: Path,
        **options: Any,
    ) -> ServiceHandle:
        """A gateway and the catalog started for it, with the catalog settings among `settings`;
        the gateway's handle owns the catalog (stopping one stops both)."""
        from perflab_services.catalog.core.config import Settings as CatalogSettings

        catalog_keys = set(CatalogSettings.model_fields) - {"log_file", "service_name"}
        catalog_settings: dict[str, Any] = {
            k: settings.pop(k) for k in list(settings) if k in catalog_keys
        }
        catalog = self.service(
            "catalog",
            label=f"{options['label'] or 'gateway'}-catalog",
            log_dir=log_dir,
            workers=options["workers"],
            profile=options["profile"] or False,
            **catalog_settings,
        )
        self.services.remove(catalog)  # owned by the gateway handle from now on
        gateway_env = service_env("gateway", {**settings, "catalog_url": catalog.url})
        return self._start("gateway", {**gateway_env, **(env or {})}, log_dir, [catalog], **options)

    def _start(
        self,
        name: str,
        env: dict[str, str],
        log_dir: Path,
        upstreams: list[ServiceHandle],
        **options: Any,
    ) -> ServiceHandle:
        """Start one service; if it fails, stop the `upstreams` started for it."""
        try:
            handle = start_service(name, env, log_dir, **options)
        except BaseException:
            for upstream in upstreams:
                upstream.stop()
            raise
        handle.upstreams.extend(upstreams)
        self.services.append(handle)
        return handle

    def close(self) -> None:
        for svc in self.services:
            svc.stop()
        self.services.clear()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()
            self.embedded_redis = None

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a notebook that forgot close(): still stop the children
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing to tell
            self.close()


__all__ = ["LAB_DEFAULTS", "Lab", "LabError", "default_database_url", "service_env"]
