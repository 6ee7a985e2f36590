"""Token-bucket rate limiting per client, shared across workers through Redis.

Each client (the verified token's subject, else the peer IP: `X-Forwarded-For` is not trusted,
since anyone can set it) has a bucket of `burst` tokens refilled at `rate` per second; a request
takes one token or gets a 429 with `Retry-After`.

With a Redis URL, the bucket lives in Redis and one Lua script reads, refills, takes and writes
it atomically, so every worker and every replica see the same count. Redis time is used, so
clock skew between processes does not matter. Without Redis, or while Redis fails (a 1 s
breaker, like the cache), each process keeps its own buckets: limits then apply per worker,
which errs on letting traffic through rather than failing requests because Redis is down.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from typing import Any

from perflab_services.common.asgi import Receive, Scope, Send, send_json

# KEYS[1] bucket; ARGV rate/s, burst. Returns {allowed (0/1), seconds to wait as a string}.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = t
end
tokens = math.min(burst, tokens + math.max(0, t - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(t))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""

PREFIX = "catalog:ratelimit:"


class LocalBuckets:
    """In-process token buckets (one lock; pruned when they grow past `max_keys`)."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> tuple[bool, float]:
        now = time.monotonic()
        with self._lock:
            tokens, ts = self._buckets.get(key, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - ts) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                allowed, wait = True, 0.0
            else:
                self._buckets[key] = (tokens, now)
                allowed, wait = False, (1 - tokens) / self.rate
            if len(self._buckets) > self.max_keys:
                self._prune(now)
        return allowed, wait

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        for k in [k for k, (_, ts) in self._buckets.items() if now - ts > full_after]:
            del self._buckets[k]


class RateLimiter:
    """Redis buckets when a URL is given, local ones otherwise or while Redis is failing."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        redis_url: str | None = None,
        redis_timeout: float = 0.25,
        logger: Any = None,
        open_seconds: float = 1.0,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.local = LocalBuckets(rate, burst)
        self.logger = logger
        self.open_seconds = open_seconds
        self._open_until = 0.0
        self._script = None
        self.backend = "memory"
        if redis_url:
            from perflab_services.catalog.core.cache import redis_client

            client = redis_client(redis_url, redis_timeout)
            self._client = client
            self._script = client.register_script(_LUA)
            self.backend = "redis"

    async def hit(self, key: str) -> tuple[bool, float]:
        if self._script is not None and time.monotonic() >= self._open_until:
            try:
                allowed, wait = await self._script(
                    keys=[PREFIX + key], args=[self.rate, self.burst]
                )
                return bool(int(allowed)), float(wait)
            except Exception as exc:  # Redis down or slow: limit locally for a second
                self._open_until = time.monotonic() + self.open_seconds
                if self.logger is not None:
                    self.logger.warning(
                        "ratelimit_error", error=f"{type(exc).__name__}: {exc}"[:200]
                    )
        return self.local.hit(key)


class RateLimitMiddleware:
    """429 + Retry-After when the caller's bucket is empty; ops endpoints are never limited.

    `identify(scope)` names the client: the lab passes one that verifies the bearer token and
    returns `user:<sub>`, else `ip:<peer address>`.
    """

    EXEMPT = ("/healthz", "/metrics")

    def __init__(self, app: Any, *, limiter: RateLimiter, identify: Any, counter: Any = None):
        self.app = app
        self.limiter = limiter
        self.identify = identify
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        allowed, wait = await self.limiter.hit(self.identify(scope))
        if allowed:
            await self.app(scope, receive, send)
            return
        if self.counter is not None:
            self.counter.inc()
        retry_after = max(1, math.ceil(wait))
        await send_json(
            send,
            429,
            {
                "detail": f"rate limit exceeded: at most {self.limiter.rate:g} requests/s "
                f"(bursts of {self.limiter.burst}); retry in {retry_after} s",
                "retry_after": retry_after,
            },
            [(b"retry-after", str(retry_after).encode())],
        )


class LoginThrottle:
    """Buckets for `POST /auth/token`, per client and per username, checked before the password
    is hashed: each login costs tens of ms of scrypt on purpose, so unthrottled it is both a
    password-guessing and a CPU-exhaustion lever. Per client stops one source; per username
    stops many sources guessing one account. Same Redis-or-local buckets as the rate limit."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    async def wait(self, client: str, username: str) -> float | None:
        """None if this attempt may go ahead, else the seconds to wait before the next one."""
        user = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        for key in (f"login:ip:{client}", f"login:user:{user}"):
            allowed, wait = await self.limiter.hit(key)
            if not allowed:
                return max(1.0, math.ceil(wait))
        return None
