"""The gateway when the catalog fails: honest 503/504s, a breaker that opens and recovers,
retries that never write a review twice."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from perflab.services import start_service


@contextlib.contextmanager
def catalog_writes_blocked(database_url: str) -> Iterator[None]:
    """Hold a lock that makes the catalog's review INSERTs wait (reads still go through)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database, isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")  # the one write lock SQLite has
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
    else:
        import psycopg

        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            conn.execute("LOCK TABLE reviews IN SHARE ROW EXCLUSIVE MODE")  # blocks INSERT only
            try:
                yield
            finally:
                conn.rollback()


def stored_reviews(database_url: str, review_text: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.scalar(
                text("SELECT count(*) FROM reviews WHERE text = :t"), {"t": review_text}
            )
    finally:
        engine.dispose()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a hung upstream."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for s in held:
        s.close()
    server.close()


def test_catalog_down_is_a_fast_503_and_the_breaker_recovers(
    start_catalog, start_gateway, tmp_root, log_lines
):
    catalog = start_catalog("g-outage-catalog", queries="optimized", cache="none")
    gw = start_gateway(
        "g-outage", catalog.url, retries=2, breaker_failures=3, breaker_cooldown_seconds=1
    )
    assert httpx.get(f"{gw.url}/products/1").status_code == 200
    catalog.stop()

    t0 = time.monotonic()
    down = httpx.get(f"{gw.url}/products/1", timeout=10)
    assert down.status_code == 503
    assert time.monotonic() - t0 < 2.0, "connection refused must not wait for a timeout"
    assert "catalog unavailable" in down.json()["detail"]
    assert "connect" in down.json()["detail"]

    # Three refused attempts in a row opened the breaker: now it fails without trying.
    t0 = time.monotonic()
    fast = httpx.get(f"{gw.url}/products/2", timeout=10)
    assert fast.status_code == 503
    assert "circuit open" in fast.json()["detail"]
    assert int(fast.headers["retry-after"]) >= 1
    assert time.monotonic() - t0 < 1.0
    (line,) = log_lines(gw.log_file, fast.headers["x-request-id"])
    assert line["upstream_attempts"] == 0, "the open breaker sent nothing to the catalog"
    assert httpx.get(f"{gw.url}/healthz").json()["circuit"] == "open"

    back = start_service(
        "catalog", catalog.env, tmp_root / "logs", label=catalog.name, port=catalog.port
    )
    try:
        t_back = time.monotonic()
        status = None
        while time.monotonic() - t_back < 10 and status != 200:
            status = httpx.get(f"{gw.url}/products/1", timeout=10).status_code
            time.sleep(0.1)
        assert status == 200, "the gateway did not recover within 10 s of the catalog's return"
        assert time.monotonic() - t_back < 5, "half-open probe should succeed after ~1 s cool-down"
        assert httpx.get(f"{gw.url}/healthz").json()["circuit"] == "closed"
        metrics = httpx.get(f"{gw.url}/metrics").text
        assert 'upstream_requests_total{method="GET",outcome="connect_error"}' in metrics
        assert 'upstream_requests_total{method="GET",outcome="circuit_open"}' in metrics
        assert "circuit_breaker_opened_total 1.0" in metrics
    finally:
        back.stop()


def test_hung_catalog_is_a_504_after_bounded_retries(start_gateway, black_hole, log_lines):
    gw = start_gateway("g-hung", black_hole, read_timeout=0.3, retries=1, breaker_failures=50)
    rid = f"hung-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    r = httpx.get(f"{gw.url}/products/1", headers={"X-Request-ID": rid}, timeout=10)
    elapsed = time.monotonic() - t0
    assert r.status_code == 504
    assert "timeout" in r.json()["detail"]
    assert 0.6 <= elapsed < 5, "two attempts of 0.3 s each, plus a short backoff"
    (line,) = log_lines(gw.log_file, rid)
    assert line["upstream_attempts"] == 2
    assert line["status"] == 504


@pytest.fixture(scope="module")
def impatient_gateway(start_gateway, catalog):
    """Times out quickly and retries a lot, so a blocked catalog write gets retried."""
    return start_gateway(
        "g-impatient",
        catalog.url,
        read_timeout=0.5,
        retries=6,
        backoff_base_seconds=0.05,
        backoff_max_seconds=0.2,
        breaker_failures=100,
    )


def _post_while_writes_blocked(database_url, gw_url, body, headers, hold=1.2) -> httpx.Response:
    with ThreadPoolExecutor(1) as pool, catalog_writes_blocked(database_url):
        future = pool.submit(
            httpx.post, f"{gw_url}/products/14/reviews", json=body, headers=headers, timeout=30
        )
        time.sleep(hold)
    return future.result()


def test_keyed_post_is_retried_but_stored_once(
    impatient_gateway, catalog, database_url, log_lines, login
):
    rid = f"keyed-{uuid.uuid4().hex[:8]}"
    body = {"rating": 5, "text": f"retried once {rid}", "author": "retry"}
    headers = {"X-Request-ID": rid, "Idempotency-Key": uuid.uuid4().hex, **login(catalog)}
    r = _post_while_writes_blocked(database_url, impatient_gateway.url, body, headers)
    assert r.status_code in (200, 201), r.text
    (gw_line,) = log_lines(impatient_gateway.log_file, rid)
    assert gw_line["upstream_attempts"] >= 2, "the first attempt timed out: it was retried"
    # Every attempt reached the catalog (same request id), and all but one found the first review.
    attempts = log_lines(catalog.log_file, rid, count=gw_line["upstream_attempts"])
    assert len(attempts) >= 2
    assert stored_reviews(database_url, body["text"]) == 1


def test_unkeyed_post_that_timed_out_is_not_retried(
    impatient_gateway, catalog, database_url, log_lines, login
):
    rid = f"unkeyed-{uuid.uuid4().hex[:8]}"
    body = {"rating": 2, "text": f"not retried {rid}", "author": "retry"}
    headers = {"X-Request-ID": rid, **login(catalog)}
    r = _post_while_writes_blocked(database_url, impatient_gateway.url, body, headers)
    assert r.status_code == 504
    assert "timeout" in r.json()["detail"]
    (gw_line,) = log_lines(impatient_gateway.log_file, rid)
    assert gw_line["upstream_attempts"] == 1
    # The catalog finished the one attempt after the lock went away: stored once, logged once.
    assert len(log_lines(catalog.log_file, rid, count=2, timeout=2.0)) == 1
    assert stored_reviews(database_url, body["text"]) == 1
