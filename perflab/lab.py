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
from pathlib import Path
from typing import Any

from perflab import paths
from perflab.errors import LabError
from perflab.redis_server import EmbeddedRedis
from perflab.services import ServiceHandle, start_service


def _env_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


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
        # The lab measures speed: the catalog's per-client rate limit (on by default in the
        # service) is off for lab-started services unless a caller turns it on, so load from
        # one IP is never measured as 429s. The value is in the env the manifest records.
        settings.setdefault("rate_limit_enabled", False)
        env = {"CATALOG_DATABASE_URL": self.database_url}
        for key, value in settings.items():
            env[f"CATALOG_{key.upper()}"] = _env_value(value)
        if settings.get("cache") == "redis":
            env["CATALOG_REDIS_URL"] = self.redis_url
        return env

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
        if name == "catalog":
            self.ensure_data()
            full_env = {**self.catalog_env(**settings), **(env or {})}
            upstreams: list[ServiceHandle] = []
        else:
            upstreams = []
            if name == "gateway" and not settings.get("catalog_url"):
                from perflab_services.catalog.core.config import Settings as CatalogSettings

                catalog_keys = set(CatalogSettings.model_fields) - {"log_file", "service_name"}
                catalog_settings: dict[str, Any] = {
                    k: settings.pop(k) for k in list(settings) if k in catalog_keys
                }
                catalog = self.service(
                    "catalog",
                    label=f"{label or name}-catalog",
                    log_dir=log_dir,
                    workers=workers,
                    profile=profile,
                    **catalog_settings,
                )
                self.services.remove(catalog)  # owned by the gateway handle from now on
                upstreams.append(catalog)
                settings["catalog_url"] = catalog.url
            full_env = {f"{name.upper()}_{k.upper()}": _env_value(v) for k, v in settings.items()}
            full_env.update(env or {})
        try:
            handle = start_service(
                name,
                full_env,
                log_dir or self.log_dir,
                label=label,
                port=port,
                workers=workers,
                tls=tls,
                profile=_profile_dir(profile, log_dir or self.log_dir),
            )
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


__all__ = ["Lab", "LabError", "default_database_url"]
