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


@pytest.fixture(scope="module")
def redis_cached(start_catalog, redis_url: str) -> ServiceHandle:
    return start_catalog("t-redis", queries="optimized", cache="redis", redis_url=redis_url)
