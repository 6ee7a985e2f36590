"""Cache-aside: hits, invalidation on write, and reads that survive a Redis outage."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from perflab import auth
from perflab.redis_server import EmbeddedRedis


def _review(url: str, product_id: int, text: str) -> httpx.Response:
    return httpx.post(
        f"{url}/products/{product_id}/reviews",
        json={"rating": 5, "text": text, "author": "tester"},
        headers=auth.headers(url, "editor"),
    )


@pytest.mark.slow  # the variant fixture starts a catalog (and Redis)
@pytest.mark.parametrize("variant", ["memory", "redis_cached"])
def test_second_get_is_a_hit_and_a_write_invalidates(variant, request):
    svc = request.getfixturevalue(variant)
    pid = 7 if variant == "memory" else 8
    if variant == "redis_cached" and not os.environ.get("REDIS_URL"):
        # the lab's own redis-server: reached through its private unix socket only
        assert svc.env["CATALOG_REDIS_URL"].startswith("unix://")
    first = httpx.get(f"{svc.url}/products/{pid}")
    second = httpx.get(f"{svc.url}/products/{pid}")
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cache"] in ("miss", "hit")
    assert second.headers["x-cache"] == "hit"
    assert second.headers["x-db-queries"] == "0"
    text = f"fresh review for {variant}"
    assert _review(svc.url, pid, text).status_code == 201
    after = httpx.get(f"{svc.url}/products/{pid}")
    assert after.headers["x-cache"] == "miss"
    assert after.json()["latest_reviews"][0]["text"] == text
    assert after.json()["reviews"]["count"] == second.json()["reviews"]["count"] + 1


def test_no_cache_variant_says_bypass(optimized):
    r = httpx.get(f"{optimized.url}/products/1")
    assert r.headers["x-cache"] == "bypass"


def test_top_is_cached_and_invalidated(memory):
    a = httpx.get(f"{memory.url}/categories/1/top?limit=3")
    b = httpx.get(f"{memory.url}/categories/1/top?limit=3")
    assert b.headers["x-cache"] == "hit"
    pid = a.json()["products"][0]["id"]
    assert _review(memory.url, pid, "top invalidation").status_code == 201
    c = httpx.get(f"{memory.url}/categories/1/top?limit=3")
    assert c.headers["x-cache"] == "miss"


def test_redis_outage_fails_open_then_recovers(start_catalog, tmp_path):
    """Kill the cache's redis-server mid-test: reads keep answering 200 from the database."""
    redis = EmbeddedRedis(log_dir=tmp_path).start()
    try:
        svc = start_catalog("t-outage", queries="optimized", cache="redis", redis_url=redis.url)
        assert httpx.get(f"{svc.url}/products/5").status_code == 200
        assert httpx.get(f"{svc.url}/products/5").headers["x-cache"] == "hit"
        redis.proc.stop(timeout=2)
        for pid in (5, 6, 5, 9):
            r = httpx.get(f"{svc.url}/products/{pid}", timeout=5)
            assert r.status_code == 200
            assert r.headers["x-cache"] == "bypass"
        metrics = httpx.get(f"{svc.url}/metrics").text
        assert 'cache_requests_total{cache="redis",result="error"}' in metrics
        # Bring Redis back on the same socket: the circuit closes by itself.
        redis.restart()
        deadline = time.monotonic() + 10
        seen = set()
        while time.monotonic() < deadline and "hit" not in seen:
            seen.add(httpx.get(f"{svc.url}/products/5").headers["x-cache"])
            time.sleep(0.2)
        assert "hit" in seen, f"cache never came back: saw {seen}"
    finally:
        redis.stop()
