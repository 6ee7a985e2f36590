"""Single-flight: N concurrent GETs of a cold key load it once; the others wait for that value."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import httpx
import pytest
import redis

from perflab_services.catalog.core.cache import PREFIX

N = 16
CATEGORY = 3
PATH = f"/categories/{CATEGORY}/top?limit=7"  # naive: dozens of queries, slow enough to overlap


async def _concurrent_gets(url: str, rid_prefix: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=N)) as client:
        return await asyncio.gather(
            *(
                client.get(url + PATH, headers={"X-Request-ID": f"{rid_prefix}-{i}"})
                for i in range(N)
            )
        )


def _started(line: dict) -> float:
    end = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
    return end - line["duration_ms"] / 1000


@pytest.mark.parametrize("cache", ["memory", "redis"])
def test_concurrent_gets_on_a_cold_key_load_once(
    cache, start_catalog, redis_url, redis_settings, log_lines
):
    settings = redis_settings if cache == "redis" else {}
    svc = start_catalog(f"t-sf-{cache}", queries="naive", cache=cache, **settings)
    if cache == "redis":  # an external Redis may hold the key from an earlier run: make it cold
        redis.Redis.from_url(redis_url).delete(f"{PREFIX}category:{CATEGORY}:top")
    rid = f"sf-{cache}-{uuid.uuid4().hex[:8]}"
    responses = asyncio.run(_concurrent_gets(svc.url, rid))
    assert [r.status_code for r in responses] == [200] * N
    assert len({r.content for r in responses}) == 1, "everyone got the same document"
    results = sorted(r.headers["x-cache"] for r in responses)
    assert results == ["hit"] * (N - 1) + ["miss"], results

    # Each request's line, waited for: lines are written in batches (common/logging.py).
    mine = [line for i in range(N) for line in log_lines(svc.log_file, f"{rid}-{i}")]
    assert len(mine) == N
    loads = [x for x in mine if x["db_queries"] > 0]
    assert len(loads) == 1, "exactly one request ran SQL"
    (miss,) = loads
    assert miss["cache"] == "miss" and miss["db_queries"] > 10
    # The test means something only if others arrived while that load ran (in its first half,
    # long before its value was stored): they waited for it instead of loading too.
    during_load = [
        x
        for x in mine
        if x is not miss and _started(x) < _started(miss) + miss["duration_ms"] / 2000
    ]
    assert during_load, "no request overlapped the load; single-flight was not exercised"
