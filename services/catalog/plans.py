"""Why is `optimized` faster? Ask the database how it runs each endpoint's statements.

`query_plans(database_url, "naive")` returns, for every endpoint, the statements the
repository of that variant sends (built by the same functions in `repository.py`, so this is
the real SQL, not a copy), each with the database's plan: SQLite's `EXPLAIN QUERY PLAN`, or
PostgreSQL's `EXPLAIN ANALYZE` (which runs the statement and reports real times and row counts).

The plans are taken with the variant's indexes, as its service would have them: the index
changes happen inside a transaction that is rolled back, so the database is left as it was.
Typical finding: the naive variant's reviews look-up is `SCAN reviews` (every row, once per
product: the N+1 multiplies it), while the optimized one is
`SEARCH reviews USING INDEX ix_reviews_product_id_created_at (product_id=?)`, and the product
page's histogram `SEARCH reviews USING COVERING INDEX ix_reviews_product_id_rating` (the index
alone answers it: no table row is read).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.sql import Select

from perflab_services.catalog import repository as repo
from perflab_services.catalog import schemas
from perflab_services.catalog.core.db import OPTIONAL_INDEXES, make_engine
from perflab_services.catalog.models import Category, Product


@dataclass
class QueryPlan:
    """One statement of one endpoint, and how the database runs it."""

    endpoint: str
    step: str
    runs: str  # "once", or "per product" for the statements an N+1 repeats
    sql: str
    plan: list[dict[str, Any]]  # SQLite: EXPLAIN QUERY PLAN rows; PostgreSQL: plan nodes
    text: str  # the plan as the database prints it
    scans: list[str] = field(default_factory=list)  # tables walked row by row (SCAN, Seq Scan)
    indexes: list[str] = field(default_factory=list)  # indexes the plan uses

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def statements(
    queries: str,
    *,
    product_id: int = 1,
    category_id: int = 1,
    limit: int = 10,
    filters: schemas.ProductFilters | None = None,
) -> list[tuple[str, str, str, Select]]:
    """(endpoint, step, runs, statement) for each statement a variant's endpoints send."""
    f = filters or schemas.ProductFilters()
    if queries == "naive":
        product = Product(id=product_id, category_id=category_id)
        category = Category(id=category_id)
        return [
            ("GET /products", "page of products", "once", repo.naive_page(f)),
            ("GET /products", "category of a product", "per product",
             repo.lazy_load(Product.category, product)),
            ("GET /products", "reviews of a product", "per product",
             repo.lazy_load(Product.reviews, product)),
            ("GET /products/{id}", "product", "once",
             select(Product).where(Product.id == product_id)),
            ("GET /products/{id}", "all its reviews", "once",
             repo.lazy_load(Product.reviews, product)),
            ("GET /products/{id}", "its category", "once",
             repo.lazy_load(Product.category, product)),
            ("GET /categories/{id}/top", "category", "once",
             select(Category).where(Category.id == category_id)),
            ("GET /categories/{id}/top", "its products", "once",
             repo.lazy_load(Category.products, category)),
            ("GET /categories/{id}/top", "reviews of a product", "per product",
             repo.lazy_load(Product.reviews, product)),
        ]  # fmt: skip
    if queries == "optimized":
        ids = list(range(product_id, product_id + f.limit))
        return [
            ("GET /products", "page with category names", "once", repo.optimized_page(f)),
            ("GET /products", "ratings of the page", "once", repo.ratings(ids)),
            ("GET /products/{id}", "product with category", "once",
             repo.product_with_category(product_id)),
            ("GET /products/{id}", "rating histogram", "once",
             repo.rating_histogram(product_id)),
            ("GET /products/{id}", "latest reviews", "once", repo.latest_reviews(product_id)),
            ("GET /categories/{id}/top", "category name", "once",
             repo.category_name(category_id)),
            ("GET /categories/{id}/top", "top products", "once",
             repo.top_products(category_id, limit)),
        ]  # fmt: skip
    raise ValueError(f"unknown queries variant {queries!r}: choose naive or optimized")


def _readable_sql(stmt: Select, engine: Engine) -> str:
    try:
        return str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    except Exception:  # a value with no literal form: show the placeholders
        return str(stmt.compile(dialect=engine.dialect))


def _explain(conn: Connection, stmt: Select, analyze: bool) -> tuple[list[dict], str, list, list]:
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    if conn.dialect.paramstyle in ("qmark", "numeric", "format"):
        params: Any = tuple(compiled.params[k] for k in compiled.positiontup or ())
    else:
        params = compiled.params
    sql = str(compiled)
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
        plan = [{"id": r[0], "parent": r[1], "detail": r[3]} for r in rows]
        depth: dict[int, int] = {0: -1}
        lines = []
        for node in plan:
            depth[node["id"]] = depth.get(node["parent"], -1) + 1
            lines.append("  " * depth[node["id"]] + node["detail"])
        scans, indexes = [], []
        for node in plan:
            words = node["detail"].split()
            if words[:1] == ["SCAN"] and "INDEX" not in words:
                scans.append(words[1])
            if "INDEX" in words:
                indexes.append(words[words.index("INDEX") + 1])
        return plan, "\n".join(lines), scans, indexes
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    raw = conn.exec_driver_sql(f"EXPLAIN ({options}) {sql}", params).scalar_one()
    doc = raw if isinstance(raw, list) else json.loads(raw)
    text_options = "ANALYZE" if analyze else "COSTS"
    lines = [r[0] for r in conn.exec_driver_sql(f"EXPLAIN ({text_options}) {sql}", params).all()]
    nodes: list[dict] = []

    def walk(node: dict, depth: int) -> None:
        flat = {k: v for k, v in node.items() if k != "Plans"}
        nodes.append({"depth": depth, **flat})
        for child in node.get("Plans", ()):
            walk(child, depth + 1)

    walk(doc[0]["Plan"], 0)
    scans = [n["Relation Name"] for n in nodes if n.get("Node Type") == "Seq Scan"]
    indexes = [n["Index Name"] for n in nodes if "Index Name" in n]
    return nodes, "\n".join(lines), scans, indexes


def query_plans(
    database: str | Engine,
    queries: str = "optimized",
    *,
    product_id: int = 1,
    category_id: int = 1,
    limit: int = 10,
    filters: schemas.ProductFilters | None = None,
    variant_indexes: bool = True,
    analyze: bool = True,
) -> list[QueryPlan]:
    """The plan of every statement of the `queries` variant ("naive" or "optimized").

    `variant_indexes`: plan with the indexes the variant's service would have (created or
    dropped in a transaction that is rolled back); False plans against the database as it is.
    `analyze` (PostgreSQL): EXPLAIN ANALYZE, which runs each statement for real timings.
    """
    wanted = statements(
        queries, product_id=product_id, category_id=category_id, limit=limit, filters=filters
    )
    engine = make_engine(database) if isinstance(database, str) else database
    try:
        with engine.connect() as conn:
            trans = conn.begin()
            try:
                if variant_indexes:
                    for name, (table, columns) in OPTIONAL_INDEXES.items():
                        if queries == "optimized":
                            ddl = f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})"
                        else:
                            ddl = f"DROP INDEX IF EXISTS {name}"
                        conn.execute(text(ddl))
                out = []
                for endpoint, step, runs, stmt in wanted:
                    plan, plan_text, scans, indexes = _explain(conn, stmt, analyze)
                    out.append(
                        QueryPlan(
                            endpoint=endpoint,
                            step=step,
                            runs=runs,
                            sql=_readable_sql(stmt, engine),
                            plan=plan,
                            text=plan_text,
                            scans=scans,
                            indexes=indexes,
                        )
                    )
            finally:
                trans.rollback()  # leave the indexes as they were
        return out
    finally:
        if isinstance(database, str):
            engine.dispose()
