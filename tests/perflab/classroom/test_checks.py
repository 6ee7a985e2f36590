"""The exercise checks pass a correct solution and fail the exercises' starting points."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from perflab.classroom import checks
from perflab_services.catalog import schemas
from perflab_services.catalog.repository import NaiveRepository, OptimizedRepository


class _TTL:
    def __init__(self, ttl):
        self.ttl, self.entries = ttl, {}

    def get_or_load(self, key, loader):
        hit = self.entries.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        value = loader()
        self.entries[key] = (time.monotonic() + self.ttl, value)
        return value


class _Forever(_TTL):  # never expires: stale data
    def get_or_load(self, key, loader):
        if key not in self.entries:
            self.entries[key] = (0, loader())
        return self.entries[key][1]


class _NoCache:
    def __init__(self, ttl):
        pass

    def get_or_load(self, key, loader):
        return loader()


def _optimized(session, category, limit):
    return OptimizedRepository().list_products(
        session, schemas.ProductFilters(category=category, limit=limit)
    )


def _naive(session, category, limit):
    return NaiveRepository().list_products(
        session, schemas.ProductFilters(category=category, limit=limit)
    )


def test_list_products_check(database_url):
    result = checks.check_list_products(_optimized, database_url, min_p95_ratio=2.0)
    assert result.measured["max_queries"] <= 3
    with pytest.raises(checks.CheckFailed, match="SQL statements"):
        checks.check_list_products(_naive, database_url)


def test_list_products_check_catches_wrong_answers(database_url):
    def wrong(session, category, limit):
        items = _optimized(session, category, limit).items
        return [{**i.model_dump(), "reviews": {"count": 0, "mean": None}} for i in items]

    with pytest.raises(checks.CheckFailed, match="differs"):
        checks.check_list_products(wrong, database_url, calls=3)


def test_cache_check(database_url):
    result = checks.check_cache(_TTL, database_url, requests=200)
    assert result.measured["hit_ratio"] >= 0.5
    with pytest.raises(checks.CheckFailed, match="loader ran 2 times"):
        checks.check_cache(_NoCache, database_url, requests=50)
    with pytest.raises(checks.CheckFailed, match="stale"):
        checks.check_cache(_Forever, database_url, requests=50)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    rating: StrictInt = Field(ge=1, le=5)
    text: str = Field(min_length=1, max_length=2000)
    author: str = Field(min_length=1, max_length=80)


class _Loose(BaseModel):
    rating: int
    text: str
    author: str


def test_review_validation_check(start_catalog):
    svc = start_catalog("t-checks-validation")
    result = checks.check_review_validation(_Strict, svc.url)
    assert result.measured["service_4xx"] == len(checks.BAD_REVIEWS)
    with pytest.raises(checks.CheckFailed, match="accepted"):
        checks.check_review_validation(_Loose)


def test_zipf_keys_favour_the_first():
    keys = checks.zipf_keys(100, 2000, seed=3)
    assert min(keys) >= 1 and max(keys) <= 100
    assert keys.count(1) > 5 * keys.count(50)


@pytest.mark.slow  # starts and restarts a catalog
def test_retrying_client_check_fails_a_client_without_retries(database_url, tmp_root):
    import httpx

    from perflab.procs import free_port
    from perflab.services import start_service

    port = free_port()
    env = {"CATALOG_DATABASE_URL": database_url}
    handle = {"svc": start_service("catalog", env, tmp_root / "logs", label="t-r1", port=port)}

    def restart():
        handle["svc"].stop()
        time.sleep(0.5)
        handle["svc"] = start_service("catalog", env, tmp_root / "logs", label="t-r2", port=port)

    def plain(url):
        return httpx.get(url, timeout=2, trust_env=False)

    try:
        with pytest.raises(checks.CheckFailed, match="reads failed during the restart"):
            checks.check_retrying_client(plain, restart, handle["svc"].url + "/products/1")
    finally:
        handle["svc"].stop()
