"""Query plans of the real repository statements: naive scans reviews, optimized uses an index."""

from __future__ import annotations

import re

from sqlalchemy import event
from sqlalchemy.orm import Session

from perflab_services.catalog import plans
from perflab_services.catalog.core.db import existing_indexes, is_sqlite, make_engine
from perflab_services.catalog.repository import NaiveRepository, OptimizedRepository
from perflab_services.catalog.schemas import ProductFilters


def _by_step(result: list[plans.QueryPlan]) -> dict[tuple[str, str], plans.QueryPlan]:
    return {(p.endpoint, p.step): p for p in result}


def test_plans_show_the_scan_the_index_removes(database_url):
    engine = make_engine(database_url)
    try:
        before = existing_indexes(engine)
        naive = _by_step(plans.query_plans(engine, "naive"))
        optimized = _by_step(plans.query_plans(engine, "optimized"))
        assert existing_indexes(engine) == before, "plans must leave the indexes as they were"
    finally:
        engine.dispose()
    for result in (naive, optimized):
        for p in result.values():
            assert p.plan and p.text.strip(), (p.endpoint, p.step)
            assert "SELECT" in p.sql
    n_reviews = naive[("GET /products/{id}", "all its reviews")]
    o_reviews = optimized[("GET /products/{id}", "latest reviews")]
    assert naive[("GET /products", "reviews of a product")].runs == "per product"
    if is_sqlite(database_url):
        assert "reviews" in n_reviews.scans
        assert "SCAN reviews" in n_reviews.text
        assert "ix_reviews_product_id_created_at" in o_reviews.indexes
        assert "SEARCH reviews USING INDEX ix_reviews_product_id_created_at" in o_reviews.text
        assert not any("reviews" in p.scans for p in optimized.values())
        histogram = optimized[("GET /products/{id}", "rating histogram")]
        assert "COVERING INDEX ix_reviews_product_id_rating" in histogram.text
    else:  # EXPLAIN ANALYZE ran each statement: real row counts and times
        assert "Execution Time" in n_reviews.text
        assert all("Actual Rows" in p.plan[0] for p in optimized.values())


def _normal(sql: str) -> str:
    """Whitespace and bind-parameter names (pk_1 vs id_1) aside, the same SQL."""
    return re.sub(r"%\(\w+\)s", "%s", " ".join(sql.split()))


def _executed_sql(database_url: str, call) -> list[str]:
    engine = make_engine(database_url)
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda c, cur, sql, *a: seen.append(sql))
    try:
        with engine.connect() as conn, Session(conn) as s:
            call(s)
    finally:
        engine.dispose()
    return [_normal(sql) for sql in seen if not sql.startswith("BEGIN")]


def _compiled(database_url: str, queries: str, endpoint: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        out = []
        for ep, _step, _runs, stmt in plans.statements(queries, product_id=3):
            if ep == endpoint:
                sql = stmt.compile(
                    dialect=engine.dialect, compile_kwargs={"render_postcompile": True}
                )
                out.append(_normal(str(sql)))
        return out
    finally:
        engine.dispose()


def test_plans_explain_the_statements_the_repository_sends(database_url):
    sent = _executed_sql(database_url, lambda s: OptimizedRepository().get_product(s, 3))
    assert sorted(sent) == sorted(_compiled(database_url, "optimized", "GET /products/{id}"))
    sent = _executed_sql(database_url, lambda s: NaiveRepository().get_product(s, 3))
    planned = set(_compiled(database_url, "naive", "GET /products/{id}"))
    assert set(sent) == planned
    page = _executed_sql(
        database_url, lambda s: OptimizedRepository().list_products(s, ProductFilters())
    )
    assert page[0] == _compiled(database_url, "optimized", "GET /products")[0]
