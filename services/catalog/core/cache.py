"""Cache-aside for the catalog: none, in-process (TTL + LRU) or Redis.

Entries are grouped: a *key* (one product, one category) holds *fields* (the detail document,
the top-N list for each N). A write invalidates the whole key, so every cached view of that
product or category goes at once. Keys carry a schema version (`catalog:v1:`) so a deploy that
changes the JSON shape never reads an old one.

On a miss only one caller loads (single-flight): the others wait for its value instead of
stampeding the database. A Redis that fails or times out never fails a read: the cache opens a
circuit for a second, answers from the database (`X-Cache: bypass`), logs and counts the error,
and tries Redis again by itself afterwards.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from time import perf_counter
from typing import Any, cast

from perflab_services.common import context

PREFIX = "catalog:v1:"
Loader = Callable[[], bytes]


def _mark(result: str, seconds: float) -> None:
    ctx = context.get()
    if ctx is not None:
        ctx.cache = result
        ctx.cache_seconds += seconds


class NoCache:
    kind = "none"

    def get_or_load(self, key: str, field: str, loader: Loader) -> bytes:
        _mark("bypass", 0.0)
        return loader()

    def invalidate(self, *keys: str) -> None:
        return None

    def close(self) -> None:
        return None


class MemoryCache:
    """A per-process dict with TTL and LRU eviction. Fast, but each worker has its own copy."""

    kind = "memory"

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: OrderedDict[str, dict[str, tuple[float, bytes]]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}

    def _lookup(self, key: str, field: str) -> bytes | None:
        with self._lock:
            group = self._data.get(key)
            if group is None or field not in group:
                return None
            expires, value = group[field]
            if expires < time.monotonic():
                del group[field]
                return None
            self._data.move_to_end(key)
            return value

    def _store(self, key: str, field: str, value: bytes) -> None:
        with self._lock:
            self._data.setdefault(key, {})[field] = (time.monotonic() + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def get_or_load(self, key: str, field: str, loader: Loader) -> bytes:
        t0 = perf_counter()
        value = self._lookup(key, field)
        if value is not None:
            _mark("hit", perf_counter() - t0)
            return value
        with self._lock:
            flight = self._loading.setdefault((key, field), threading.Lock())
        with flight:  # single-flight: the first caller loads, the rest wait for it
            value = self._lookup(key, field)
            if value is not None:
                _mark("hit", perf_counter() - t0)
                return value
            _mark("miss", perf_counter() - t0)
            value = loader()
            self._store(key, field, value)
        with self._lock:
            self._loading.pop((key, field), None)
        return value

    def invalidate(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def close(self) -> None:
        self._data.clear()


class RedisCache:
    """Cache-aside in Redis hashes with TTL, single-flight locks and a fail-open breaker."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        ttl: float,
        *,
        logger: Any = None,
        on_error: Callable[[], None] | None = None,
        open_seconds: float = 1.0,
        lock_wait_seconds: float = 2.0,
    ) -> None:
        import redis

        self.client = redis.Redis.from_url(
            url, socket_timeout=0.25, socket_connect_timeout=0.25, health_check_interval=0
        )
        self.ttl_ms = int(ttl * 1000)
        self.logger = logger
        self.on_error = on_error
        self.open_seconds = open_seconds
        self.lock_wait_seconds = lock_wait_seconds
        self._open_until = 0.0

    # --- circuit breaker -------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return time.monotonic() >= self._open_until

    def _failed(self, exc: Exception, op: str) -> None:
        self._open_until = time.monotonic() + self.open_seconds
        if self.on_error is not None:
            self.on_error()
        if self.logger is not None:
            self.logger.warning("cache_error", op=op, error=f"{type(exc).__name__}: {exc}")
        ctx = context.get()
        if ctx is not None:
            ctx.extra["cache_error"] = type(exc).__name__

    # --- cache-aside -----------------------------------------------------------------------
    def get_or_load(self, key: str, field: str, loader: Loader) -> bytes:
        if not self.available:
            _mark("bypass", 0.0)
            return loader()
        full = PREFIX + key
        t0 = perf_counter()
        try:
            value = cast(bytes | None, self.client.hget(full, field))  # bytes: no decode_responses
            if value is not None:
                _mark("hit", perf_counter() - t0)
                return value
            lock = f"{PREFIX}lock:{key}:{field}"
            leader = bool(self.client.set(lock, b"1", nx=True, px=5000))
            if leader:
                # Check again: a leader that finished between our HGET and SET NX has stored
                # the value and released the lock; loading again would be a second miss.
                value = cast(
                    bytes | None, self.client.hget(full, field)
                )  # bytes: no decode_responses
                if value is not None:
                    self.client.delete(lock)
                    _mark("hit", perf_counter() - t0)
                    return value
            else:
                deadline = time.monotonic() + self.lock_wait_seconds
                while time.monotonic() < deadline:  # wait for the leader's value
                    time.sleep(0.002)
                    value = cast(
                        bytes | None, self.client.hget(full, field)
                    )  # bytes: no decode_responses
                    if value is not None:
                        _mark("hit", perf_counter() - t0)
                        return value
        except Exception as exc:  # any Redis trouble: answer from the database
            self._failed(exc, "read")
            _mark("bypass", perf_counter() - t0)
            return loader()
        _mark("miss", perf_counter() - t0)
        value = loader()
        t1 = perf_counter()
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(full, field, value)
            pipe.pexpire(full, self.ttl_ms)
            if leader:
                pipe.delete(lock)
            pipe.execute()
        except Exception as exc:
            self._failed(exc, "write")
        ctx = context.get()
        if ctx is not None:
            ctx.cache_seconds += perf_counter() - t1
        return value

    def invalidate(self, *keys: str) -> None:
        if not keys:
            return
        try:
            self.client.delete(*(PREFIX + k for k in keys))
        except Exception as exc:
            # The write itself succeeded; the TTL bounds how long a stale entry can live.
            self._failed(exc, "invalidate")

    def close(self) -> None:
        self.client.close()


def make_cache(kind: str, *, redis_url: str | None, ttl: float, max_entries: int, **kw: Any):
    if kind == "memory":
        return MemoryCache(ttl, max_entries)
    if kind == "redis":
        if not redis_url:
            raise RuntimeError(
                "cache=redis needs a Redis server: set REDIS_URL, or run the service with "
                "`perflab serve catalog --cache redis`, which starts an embedded one"
            )
        return RedisCache(redis_url, ttl, **kw)
    return NoCache()
