"""Cache-aside for the catalog: none, in-process (TTL + LRU) or Redis.

Entries are grouped: a *key* (one product, one category) holds *fields* (the detail document,
the top-N list for each N). A write invalidates the whole key, so every cached view of that
product or category goes at once. Keys carry a schema version (`catalog:v2:`) so a deploy that
changes the JSON shape never reads an old one.

The caches are async and the database is not: a hit is answered on the event loop (a dict
look-up, or one Redis round trip on an asyncio connection) and only a miss runs its `loader`
(the SQLAlchemy queries) in the thread pool. The profiler showed why: handing every request to
a worker thread and back, cache hit or not, cost more than the look-up itself (see
bench/results/hotpath.md).

On a miss only one caller loads (single-flight): the others wait for its value instead of
stampeding the database. A Redis that fails or times out never fails a read: the cache opens a
circuit for a second, answers from the database (`X-Cache: bypass`), logs and counts the error,
and tries Redis again by itself afterwards. How long "times out" is: `redis_timeout_seconds`
(`redis_client`, which the rate limiter uses too).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Protocol, TypeVar, cast

from anyio import to_thread

from perflab_services.common import context
from perflab_services.common.logging import Logger

if TYPE_CHECKING:
    import redis.asyncio

PREFIX = "catalog:v2:"
Loader = Callable[[], bytes]  # blocking: runs in the thread pool
T = TypeVar("T")


class Cache(Protocol):
    """What the catalog needs from a cache; `make_cache` returns one of the three below."""

    kind: str

    async def get_or_load(self, key: str, field: str, loader: Loader) -> bytes:
        """The cached bytes of `key`/`field`, else `loader()`'s (stored for next time)."""
        ...

    async def invalidate(self, *keys: str) -> None:
        """Forget every field of `keys` (after a write)."""
        ...

    async def close(self) -> None: ...


def redis_client(url: str, timeout: float) -> redis.asyncio.Redis:
    """The catalog's one way to reach Redis (this cache and the rate limiter's buckets).

    `url` is `redis://`, `rediss://` or `unix://` (the lab's embedded server listens on a
    private unix socket only, `perflab.redis_server`). `timeout` bounds connecting and each
    reply: past it the caller fails open (bypass the cache, limit in-process) rather than make
    a request wait on Redis.
    """
    import redis.asyncio

    return redis.asyncio.Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=0
    )


async def in_thread(work: Callable[[], T]) -> T:
    """Run blocking work (a loader, a write) in the thread pool, in the request's context, so
    the SQL it runs is counted on the request (`core/db.py`)."""
    return await to_thread.run_sync(work)


def _mark(kind: str, result: str, seconds: float) -> None:
    ctx = context.get()
    if ctx is not None:
        ctx.cache = result
        ctx.cache_backend = kind
        ctx.cache_seconds += seconds


def _retrieve(task: asyncio.Task[bytes]) -> None:
    """A failed load whose waiters all went away is not an unhandled error: mark it seen."""
    if not task.cancelled():
        task.exception()


class NoCache:
    kind = "none"

    async def get_or_load(self, key: str, field: str, loader: Loader) -> bytes:
        _mark(self.kind, "bypass", 0.0)
        return await in_thread(loader)

    async def invalidate(self, *keys: str) -> None:
        return None

    async def close(self) -> None:
        return None


class MemoryCache:
    """A per-process dict with TTL and LRU eviction. Fast, but each worker has its own copy.

    Only the event loop thread touches it, so it needs no lock.
    """

    kind = "memory"

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._data: OrderedDict[str, dict[str, tuple[float, bytes]]] = OrderedDict()
        self._loading: dict[tuple[str, str], asyncio.Task[bytes]] = {}

    def _lookup(self, key: str, field: str) -> bytes | None:
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
        self._data.setdefault(key, {})[field] = (time.monotonic() + self.ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def get_or_load(self, key: str, field: str, loader: Loader) -> bytes:
        t0 = perf_counter()
        value = self._lookup(key, field)
        if value is not None:
            _mark(self.kind, "hit", perf_counter() - t0)
            return value
        flight = self._loading.get((key, field))
        if flight is not None:  # single-flight: someone is loading it, wait for that value
            value = await asyncio.shield(flight)
            _mark(self.kind, "hit", perf_counter() - t0)
            return value
        _mark(self.kind, "miss", perf_counter() - t0)
        # The load is a task of its own: if this request is cancelled (its client went away),
        # the others waiting for the value still get it.
        flight = asyncio.ensure_future(self._load_and_store(key, field, loader))
        self._loading[(key, field)] = flight
        flight.add_done_callback(_retrieve)
        return await asyncio.shield(flight)

    async def _load_and_store(self, key: str, field: str, loader: Loader) -> bytes:
        try:
            value = await in_thread(loader)
            self._store(key, field, value)
            return value
        finally:
            del self._loading[(key, field)]

    async def invalidate(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    """Cache-aside in Redis hashes with TTL, single-flight locks and a fail-open breaker."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        ttl: float,
        *,
        timeout: float = 0.25,
        logger: Logger | None = None,
        on_error: Callable[[], None] | None = None,
        open_seconds: float = 1.0,
        lock_wait_seconds: float = 2.0,
    ) -> None:
        self.client: redis.asyncio.Redis = redis_client(url, timeout)
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
    async def get_or_load(self, key: str, field: str, loader: Loader) -> bytes:
        if not self.available:
            _mark(self.kind, "bypass", 0.0)
            return await in_thread(loader)
        full = PREFIX + key
        t0 = perf_counter()
        leader = False
        try:
            value = cast(bytes | None, await self.client.hget(full, field))  # no decode_responses
            if value is not None:
                _mark(self.kind, "hit", perf_counter() - t0)
                return value
            lock = f"{PREFIX}lock:{key}:{field}"
            leader = bool(await self.client.set(lock, b"1", nx=True, px=5000))
            if leader:
                # Check again: a leader that finished between our HGET and SET NX has stored
                # the value and released the lock; loading again would be a second miss.
                value = cast(
                    bytes | None, await self.client.hget(full, field)
                )  # no decode_responses
                if value is not None:
                    await self.client.delete(lock)
                    _mark(self.kind, "hit", perf_counter() - t0)
                    return value
            else:
                deadline = time.monotonic() + self.lock_wait_seconds
                while time.monotonic() < deadline:  # wait for the leader's value
                    await asyncio.sleep(0.002)
                    value = cast(
                        bytes | None, await self.client.hget(full, field)
                    )  # no decode_responses
                    if value is not None:
                        _mark(self.kind, "hit", perf_counter() - t0)
                        return value
        except Exception as exc:  # any Redis trouble: answer from the database
            self._failed(exc, "read")
            _mark(self.kind, "bypass", perf_counter() - t0)
            return await in_thread(loader)
        _mark(self.kind, "miss", perf_counter() - t0)
        value = await in_thread(loader)
        t1 = perf_counter()
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(full, field, value)
            pipe.pexpire(full, self.ttl_ms)
            if leader:
                pipe.delete(lock)
            await pipe.execute()
        except Exception as exc:
            self._failed(exc, "write")
        ctx = context.get()
        if ctx is not None:
            ctx.cache_seconds += perf_counter() - t1
        return value

    async def invalidate(self, *keys: str) -> None:
        if not keys:
            return
        try:
            await self.client.delete(*(PREFIX + k for k in keys))
        except Exception as exc:
            # The write itself succeeded; the TTL bounds how long a stale entry can live.
            self._failed(exc, "invalidate")

    async def close(self) -> None:
        await self.client.aclose()


def make_cache(
    kind: str,
    *,
    redis_url: str | None,
    ttl: float,
    max_entries: int,
    redis_timeout: float = 0.25,
    lock_wait: float = 2.0,
    logger: Logger | None = None,
    on_error: Callable[[], None] | None = None,
) -> Cache:
    if kind == "memory":
        return MemoryCache(ttl, max_entries)
    if kind == "redis":
        if not redis_url:
            raise RuntimeError(
                "cache=redis needs a Redis server: set REDIS_URL, or run the service with "
                "`perflab serve catalog --cache redis`, which starts an embedded one"
            )
        return RedisCache(
            redis_url,
            ttl,
            timeout=redis_timeout,
            lock_wait_seconds=lock_wait,
            logger=logger,
            on_error=on_error,
        )
    return NoCache()
