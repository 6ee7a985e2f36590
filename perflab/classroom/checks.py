"""The exercises' checks: each one measures the student's code against real parts and asserts.

A check cell in an exercise notebook calls one function here. It runs the student's function
for real (a real SQLite/PostgreSQL database, a real service subprocess), measures it, prints
what it measured, and raises `CheckFailed` with a sentence saying what to fix. The logic lives
here, not in the notebooks, so it is tested (tests/perflab/classroom/test_checks.py) and the
same for every student.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from perflab.traffic import Zipf

if TYPE_CHECKING:
    from pydantic import BaseModel
    from sqlalchemy import Select

T = TypeVar("T")


class CheckFailed(AssertionError):
    """The exercise is not solved yet; the message says what was measured and what to change."""


@dataclass
class CheckResult:
    name: str
    measured: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        vals = ", ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in self.measured.items()
        )
        return f"{self.name}, measured: {vals}"


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def _timed_queries(fn: Callable[[], T]) -> tuple[T, int, float]:
    """Call `fn` in a fresh request context: its result, SQL statements run, milliseconds."""
    from perflab_services.common import context

    ctx = context.RequestContext(context.new_request_id())
    token = context.current.set(ctx)
    try:
        t0 = time.perf_counter()
        out = fn()
        ms = (time.perf_counter() - t0) * 1000
    finally:
        context.current.reset(token)
    return out, ctx.db_queries, ms


def _items(page: Any) -> list[dict]:
    """Accept a ProductPage, a list of models or a list of dicts; return dicts sorted by id."""
    items = page.items if hasattr(page, "items") and not isinstance(page, dict) else page
    rows = [i.model_dump() if hasattr(i, "model_dump") else dict(i) for i in items]
    return sorted(rows, key=lambda r: r["id"])


def _same_rows(expected: list[dict], got: list[dict]) -> str | None:
    """None if equal (rating means to 1e-3), else a sentence naming the first difference."""
    if [r["id"] for r in expected] != [r["id"] for r in got]:
        return f"product ids differ: expected {[r['id'] for r in expected][:5]}..., got " + str(
            [r["id"] for r in got][:5]
        )
    for e, g in zip(expected, got, strict=True):
        for key in ("name", "price", "category_id", "category"):
            if e[key] != g.get(key):
                return f"product {e['id']}: {key} is {g.get(key)!r}, expected {e[key]!r}"
        er, gr = e["reviews"], g.get("reviews") or {}
        gr = gr.model_dump() if hasattr(gr, "model_dump") else dict(gr)
        if er["count"] != gr.get("count"):
            return f"product {e['id']}: review count {gr.get('count')}, expected {er['count']}"
        if (er["mean"] is None) != (gr.get("mean") is None) or (
            er["mean"] is not None and abs(er["mean"] - gr["mean"]) > 1e-3
        ):
            return f"product {e['id']}: rating mean {gr.get('mean')}, expected {er['mean']}"
    return None


def check_list_products(
    student: Callable[[Any, int, int], Any],
    database_url: str,
    *,
    limit: int = 20,
    calls: int = 30,
    max_queries: int = 3,
    min_p95_ratio: float = 3.0,
) -> CheckResult:
    """Exercise 05: `student(session, category_id, limit)` lists a category's first products.

    It must return what the naive repository returns (same products, categories, review counts
    and means), run at most `max_queries` SQL statements, and have a p95 at least
    `min_p95_ratio` times lower than the naive code's, measured on the same database.
    """
    from perflab_services.catalog import schemas
    from perflab_services.catalog.core.db import Database, set_indexes
    from perflab_services.catalog.repository import NaiveRepository

    db = Database(database_url)
    try:
        set_indexes(db.engine, present=True)  # same indexes for both: this isolates the N+1
        naive = NaiveRepository()
        with db.read_session() as s:
            categories = sorted({c for (c,) in s.execute(_category_ids())})
        _require(bool(categories), "the database has no categories: run lab.ensure_data() first")
        rng = random.Random(5)
        plan = [rng.choice(categories) for _ in range(calls)]
        naive_ms, student_ms, student_q = [], [], []
        for i, cat in enumerate(plan):
            with db.read_session() as s:
                ref, _, ms = _timed_queries(
                    partial(
                        naive.list_products, s, schemas.ProductFilters(category=cat, limit=limit)
                    )
                )
            naive_ms.append(ms)
            with db.read_session() as s:
                got, q, ms = _timed_queries(partial(student, s, cat, limit))
            student_ms.append(ms)
            student_q.append(q)
            if i < 3:  # correctness on the first calls (each compares a whole page)
                diff = _same_rows(_items(ref), _items(got))
                _require(diff is None, f"your result differs from the reference: {diff}")
    finally:
        db.dispose()
    p95_naive = float(np.percentile(naive_ms, 95))
    p95_student = float(np.percentile(student_ms, 95))
    result = CheckResult(
        "list_products",
        {
            "max_queries": max(student_q),
            "naive_p95_ms": p95_naive,
            "your_p95_ms": p95_student,
            "p95_ratio": p95_naive / max(p95_student, 1e-6),
        },
    )
    print(result)
    _require(
        max(student_q) <= max_queries,
        f"your function ran up to {max(student_q)} SQL statements per call; the goal is at most "
        f"{max_queries} (look for a query inside a loop, or a lazy relationship)",
    )
    _require(
        result.measured["p95_ratio"] >= min_p95_ratio,
        f"p95 is {result.measured['p95_ratio']:.1f}x lower than the naive code's; the goal is "
        f"{min_p95_ratio:g}x",
    )
    print(f"PASS: {result.name}: every goal met")
    return result


def _category_ids() -> Select[int]:
    from sqlalchemy import select

    from perflab_services.catalog.models import Category

    return select(Category.id)


def zipf_keys(n_keys: int, count: int, s: float = 1.0, seed: int = 1) -> list[int]:
    """`count` keys in 1..n_keys with Zipf popularity (key 1 the hottest), as the load uses."""
    return Zipf(n_keys, s).sample(count, seed)


def check_cache(
    make_cache: Callable[[float], Any],
    database_url: str,
    *,
    requests: int = 400,
    min_hit_ratio: float = 0.5,
    min_p50_ratio: float = 3.0,
    ttl: float = 0.3,
) -> CheckResult:
    """Exercise 06: `make_cache(ttl)` returns an object with `get_or_load(key, loader)`.

    Correctness: a second read within the TTL does not call the loader; a read after the TTL
    does (no stale data forever). Effect: product-detail reads with Zipf-popular ids, through
    the cache, reach `min_hit_ratio` and a p50 `min_p50_ratio` times lower than uncached reads.
    """
    from perflab_services.catalog.core.db import Database
    from perflab_services.catalog.repository import OptimizedRepository

    calls: list[str] = []

    def loader_for(key: str) -> Callable[[], bytes]:
        def load() -> bytes:
            calls.append(key)
            return f"value-{key}-{len(calls)}".encode()

        return load

    cache = make_cache(ttl)
    first = cache.get_or_load("k", loader_for("k"))
    second = cache.get_or_load("k", loader_for("k"))
    _require(calls == ["k"], f"the loader ran {len(calls)} times for two reads within the TTL")
    _require(first == second, "a cached read returned a different value than the first read")
    time.sleep(ttl * 1.5)
    cache.get_or_load("k", loader_for("k"))
    _require(len(calls) == 2, "after the TTL the loader did not run again: the data can go stale")

    db = Database(database_url)
    repo = OptimizedRepository()
    try:
        with db.read_session() as s:
            n = int(s.execute(_count_products()).scalar_one())
        keys = zipf_keys(n, requests, seed=7)

        def detail(pid: int) -> bytes:
            with db.read_session() as s:
                return repo.get_product(s, pid).model_dump_json().encode()

        plain = [_timed_queries(partial(detail, p))[2] for p in keys]
        cache = make_cache(60.0)
        loads = 0

        def cached(pid: int) -> bytes:
            def load() -> bytes:
                nonlocal loads
                loads += 1
                return detail(pid)

            return cache.get_or_load(f"product:{pid}", load)

        with_cache = [_timed_queries(partial(cached, p))[2] for p in keys]
        _require(
            cached(keys[0]) == detail(keys[0]),
            "the cached body differs from the database's",
        )
    finally:
        db.dispose()
    hit_ratio = 1 - loads / len(keys)
    p50_plain, p50_cached = float(np.median(plain)), float(np.median(with_cache))
    result = CheckResult(
        "cache",
        {
            "hit_ratio": hit_ratio,
            "uncached_p50_ms": p50_plain,
            "cached_p50_ms": p50_cached,
            "p50_ratio": p50_plain / max(p50_cached, 1e-6),
        },
    )
    print(result)
    _require(
        hit_ratio >= min_hit_ratio,
        f"hit ratio {hit_ratio:.2f}; the goal is {min_hit_ratio:g} (is every key cached?)",
    )
    _require(
        result.measured["p50_ratio"] >= min_p50_ratio,
        f"p50 is {result.measured['p50_ratio']:.1f}x lower; the goal is {min_p50_ratio:g}x",
    )
    print(f"PASS: {result.name}: every goal met")
    return result


def _count_products() -> Select[int]:
    from sqlalchemy import func, select

    from perflab_services.catalog.models import Product

    return select(func.count(Product.id))


GOOD_REVIEWS: list[dict[str, object]] = [
    {"rating": 5, "text": "Works as described.", "author": "ana"},
    {"rating": 1, "text": "x" * 2000, "author": "b" * 80},
]
BAD_REVIEWS: list[dict[str, object]] = [
    {},
    {"rating": 0, "text": "too low", "author": "eve"},
    {"rating": 6, "text": "too high", "author": "eve"},
    {"rating": "5; DROP TABLE reviews", "text": "sql in a number", "author": "eve"},
    {"rating": 4.5, "text": "half a star", "author": "eve"},
    {"rating": None, "text": "null rating", "author": "eve"},
    {"rating": 3, "text": "", "author": "eve"},
    {"rating": 3, "text": "x" * 2001, "author": "eve"},
    {"rating": 3, "text": "ok", "author": "   "},
    {"rating": 3, "text": "ok", "author": "e" * 81},
    {"rating": 3, "text": "ok", "author": "eve", "is_admin": True},
    {"rating": 3, "text": ["not", "a", "string"], "author": "eve"},
]


def check_review_validation(model: type[BaseModel], service_url: str | None = None) -> CheckResult:
    """Exercise 07: a pydantic model that accepts good reviews and rejects every bad one.

    With `service_url`, every bad payload is also sent to the real service's review endpoint:
    each answer must be a 4xx with a JSON `detail` and no traceback (never a 500).
    """
    import httpx
    from pydantic import ValidationError

    for payload in GOOD_REVIEWS:
        try:
            model.model_validate(payload)
        except ValidationError as exc:
            raise CheckFailed(f"a good review was rejected: {_short(payload)}: {exc}") from None
    accepted = []
    for payload in BAD_REVIEWS:
        try:
            model.model_validate(payload)
            accepted.append(_short(payload))
        except ValidationError:
            pass
    measured: dict[str, Any] = {
        "bad_payloads": len(BAD_REVIEWS),
        "rejected": len(BAD_REVIEWS) - len(accepted),
    }
    server_errors = []
    if service_url:
        with httpx.Client(base_url=service_url, timeout=10, trust_env=False) as client:
            for payload in BAD_REVIEWS:
                r = client.post("/products/1/reviews", json=payload)
                body = r.text
                if not (400 <= r.status_code < 500) or "Traceback" in body or "detail" not in body:
                    server_errors.append(f"{r.status_code} for {_short(payload)}")
        measured["service_4xx"] = len(BAD_REVIEWS) - len(server_errors)
    result = CheckResult("review validation", measured)
    print(result)
    _require(not accepted, f"these bad payloads were accepted: {accepted}")
    _require(not server_errors, f"the service answered badly: {server_errors}")
    print(f"PASS: {result.name}: every goal met")
    return result


def _short(payload: dict) -> str:
    text = repr(payload)
    return text if len(text) < 80 else text[:77] + "..."


def check_retrying_client(
    get: Callable[[str], Any],
    restart_service: Callable[[], None],
    url: str,
    *,
    requests: int = 12,
    interval: float = 0.25,
) -> CheckResult:
    """Exercise 08: `get(url)` must ride out a service restart (retries with backoff).

    Sends `requests` reads through `get`, one every `interval` s, from a thread, while
    `restart_service()` stops the service and starts it again on the same port. Every read
    must end in a 200, and at least one must have been sent while the service was down (so the
    check proves the retries, not luck).
    """
    import httpx

    statuses: list[object] = []
    down_seen = threading.Event()

    def client() -> None:
        for _ in range(requests):
            try:
                r = get(url)
                statuses.append(getattr(r, "status_code", r))
            except Exception as exc:
                statuses.append(f"{type(exc).__name__}: {exc}")
            time.sleep(interval)

    stop_probing = threading.Event()

    def probe_down() -> None:
        while not stop_probing.is_set():
            try:
                httpx.get(url, timeout=0.5, trust_env=False)
            except httpx.HTTPError:
                down_seen.set()
            time.sleep(0.05)

    t = threading.Thread(target=client, name="student-client", daemon=True)
    t.start()
    time.sleep(interval * 2)
    prober = threading.Thread(target=probe_down, name="probe", daemon=True)
    prober.start()
    started = time.monotonic()
    # The restart runs in *this* thread: a service spawned from a thread that then exits would
    # be killed with it (PR_SET_PDEATHSIG follows the parent thread, not the process).
    try:
        restart_service()
    finally:
        downtime = time.monotonic() - started
        stop_probing.set()
        prober.join(timeout=5)
    t.join(timeout=120)
    ok = sum(s == 200 for s in statuses)
    result = CheckResult(
        "retrying client",
        {"requests": len(statuses), "ok": ok, "restart_s": downtime},
    )
    print(result)
    _require(not t.is_alive(), "your client was still waiting after 2 minutes: add timeouts")
    _require(down_seen.is_set(), "the service never looked down: the check could not test you")
    bad = [s for s in statuses if s != 200]
    _require(not bad, f"{len(bad)} reads failed during the restart, e.g. {bad[0] if bad else ''}")
    print(f"PASS: {result.name}: every goal met")
    return result
