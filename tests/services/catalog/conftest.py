from __future__ import annotations

import pytest

from perflab.services import ServiceHandle


@pytest.fixture(scope="module")
def naive(start_catalog) -> ServiceHandle:
    return start_catalog("t-naive", queries="naive", cache="none")


@pytest.fixture(scope="module")
def optimized(start_catalog) -> ServiceHandle:
    return start_catalog("t-optimized", queries="optimized", cache="none")


@pytest.fixture(scope="module")
def memory(start_catalog) -> ServiceHandle:
    return start_catalog("t-memory", queries="optimized", cache="memory")


@pytest.fixture(scope="session")
def redis_settings(redis_url: str) -> dict[str, object]:
    """Settings of a catalog using `redis_url`, for tests of what it does while Redis answers:
    Redis gets 10 s per reply, not the service's 0.25 s after which the cache and the rate
    limiter fail open for a second (bypass, in-process buckets). A busy machine can be that
    slow, and failing open has tests of its own (test_cache.py, test_faults.py). A miss waits
    up to 60 s for another worker's load of the same key, not 2 s, for the same reason."""
    return {"redis_url": redis_url, "redis_timeout_seconds": 10, "cache_lock_wait_seconds": 60}


@pytest.fixture(scope="module")
def redis_cached(start_catalog, redis_settings) -> ServiceHandle:
    return start_catalog("t-redis", queries="optimized", cache="redis", **redis_settings)
