"""Two uvicorn workers, one /metrics: every scrape counts the requests of both workers."""

from __future__ import annotations

import asyncio
import json
import os
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from perflab_services.catalog import datagen
from perflab_services.catalog.core.db import existing_indexes, make_engine, set_indexes


def _requests_counted(url: str, route: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "http_requests_total" and s.labels.get("route") == route:
                total += s.value
    return total


async def _burst(url: str, n: int) -> list[int]:
    # A fresh connection per request, so the kernel hands them to either worker.
    async def one() -> int:
        async with httpx.AsyncClient(timeout=30) as client:
            return (await client.get(f"{url}/products", params={"limit": 30})).status_code

    return await asyncio.gather(*(one() for _ in range(n)))


def test_metrics_count_requests_across_two_workers(start_catalog):
    svc = start_catalog("t-workers", workers=2, queries="naive", cache="none")
    assert svc.metrics_dir is not None and svc.metrics_dir.is_dir()
    sent = 0
    pids: set[int] = set()
    for _ in range(25):  # until both workers have answered some (usually the first burst)
        statuses = asyncio.run(_burst(svc.url, 8))
        assert statuses == [200] * 8
        sent += 8
        lines = [json.loads(x) for x in svc.log_file.read_text().splitlines() if x.strip()]
        pids = {x["pid"] for x in lines if x.get("route") == "/products"}
        if len(pids) >= 2:
            break
    assert len(pids) == 2, "both workers should have answered; the test proves nothing otherwise"
    # Whichever worker answers the scrape, it reports the requests of both.
    for _ in range(4):
        assert _requests_counted(svc.url, "/products") == sent
    text = httpx.get(f"{svc.url}/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["process_cpu_seconds"].samples[0].value > 0
    assert families["process_resident_memory_bytes"].samples[0].value > 10e6
    folder = svc.metrics_dir
    svc.stop()
    assert not folder.exists(), "the lab removes the multiprocess folder when the service stops"


def test_concurrent_schema_set_up_never_fails_on_the_lock(tmp_path):
    """Every uvicorn worker runs start-up (tables, indexes, ANALYZE) at the same moment.

    Three engines (as three workers would have) set the indexes at once, dropping and creating
    them in turn (six rounds): none may fail with "database is locked". Without the serialized
    schema transaction, a worker whose read snapshot predates another's commit fails to upgrade.
    """
    if not database_is_sqlite():
        pytest.skip("the lock this guards against is SQLite's; PostgreSQL uses an advisory lock")
    url = f"sqlite:///{tmp_path / 'medium.sqlite3'}"
    datagen.generate(url, "medium", 42)
    first = make_engine(url)
    set_indexes(first, True)  # a database that has been used: indexes and statistics exist
    first.dispose()
    errors: list[str] = []
    for round_ in range(6):
        engines = [make_engine(url) for _ in range(3)]
        barrier = threading.Barrier(len(engines))

        def work(engine, present: bool, barrier: threading.Barrier) -> None:
            barrier.wait()
            try:
                set_indexes(engine, present)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

        threads = [
            threading.Thread(target=work, args=(e, round_ % 2 == 0, barrier)) for e in engines
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for e in engines:
            e.dispose()
    assert errors == []
    assert existing_indexes(make_engine(url)) == []  # the last round dropped them


def database_is_sqlite() -> bool:
    return os.environ.get("DATABASE_URL", "sqlite").startswith("sqlite")
