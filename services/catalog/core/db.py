"""Engine, sessions and the instrumentation that counts SQL per request.

SQLite gets the settings a real service needs under concurrent load: WAL (readers never block
the writer), a busy timeout, foreign keys on, and `BEGIN IMMEDIATE` for write transactions so two
writers queue on the lock instead of failing with "database is locked" when a read transaction
tries to upgrade. PostgreSQL (psycopg 3) uses the same code through `DATABASE_URL`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from time import perf_counter
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from perflab_services.common import context, tracing


def _add_db_time(seconds: float) -> None:
    ctx = context.get()
    if ctx is not None:
        ctx.db_seconds += seconds


class _TimedCursor(sqlite3.Cursor):
    """SQLite does most of a query's work while rows are fetched, not in `execute`: time both."""

    def fetchone(self):
        t0 = perf_counter()
        try:
            return super().fetchone()
        finally:
            _add_db_time(perf_counter() - t0)

    def fetchmany(self, size: int | None = 1):
        t0 = perf_counter()
        try:
            return super().fetchmany(size)
        finally:
            _add_db_time(perf_counter() - t0)

    def fetchall(self):
        t0 = perf_counter()
        try:
            return super().fetchall()
        finally:
            _add_db_time(perf_counter() - t0)


class _TimedConnection(sqlite3.Connection):
    def cursor(self, factory=_TimedCursor):
        return super().cursor(factory)


# Indexes of the `optimized` variant: name -> (table, columns). Plain SQL that SQLite and
# PostgreSQL both accept, so the lab can create and drop them on either.
OPTIONAL_INDEXES: dict[str, tuple[str, str]] = {
    "ix_products_category_id": ("products", "category_id"),
    "ix_products_price": ("products", "price"),
    "ix_reviews_product_id_created_at": ("reviews", "product_id, created_at"),
    # The product page's rating histogram and the list's counts: index-only scans.
    "ix_reviews_product_id_rating": ("reviews", "product_id, rating"),
}

_WRITE = "perflab_write"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(url: str) -> Engine:
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "factory": _TimedConnection},
            pool_size=20,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    else:
        engine = create_engine(url, pool_size=10, max_overflow=30, pool_pre_ping=True)
    event.listen(engine, "before_cursor_execute", _before_execute)
    event.listen(engine, "after_cursor_execute", _after_execute)
    event.listen(engine, "handle_error", _on_error)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the sqlite3 module so BEGIN IMMEDIATE is possible.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    immediate = conn.get_execution_options().get(_WRITE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _before_execute(conn, cursor, statement, parameters, context_, executemany) -> None:
    # With tracing on, each statement is also a span (common/tracing.py), ended after it ran.
    span = tracing.start_sql_span(statement, conn.dialect.name)
    conn.info.setdefault("perflab_t0", []).append((perf_counter(), span))


def _after_execute(conn, cursor, statement, parameters, context_, executemany) -> None:
    t0, span = conn.info["perflab_t0"].pop()
    elapsed = perf_counter() - t0
    if span is not None:
        span.end()
    ctx = context.get()
    if ctx is not None and not statement.startswith("BEGIN"):
        ctx.db_queries += 1
        ctx.db_seconds += elapsed


def _on_error(exception_context: Any) -> None:
    """A failed statement: drop its start (and end its span as an error)."""
    conn = exception_context.connection
    started = conn.info.get("perflab_t0") if conn is not None else None
    if started:
        _t0, span = started.pop()
        if span is not None:
            tracing.fail(span, exception_context.original_exception)


class Database:
    """One engine and two session factories: reads, and writes (BEGIN IMMEDIATE on SQLite)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.read_session = sessionmaker(self.engine, expire_on_commit=False)
        self.write_session = sessionmaker(
            self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )

    def reads(self) -> Iterator[Session]:
        with self.read_session() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def existing_indexes(engine: Engine) -> list[str]:
    """Names of the optional indexes that exist now."""
    insp = inspect(engine)
    names: set[str] = set()
    for table in {t for t, _ in OPTIONAL_INDEXES.values()}:
        if insp.has_table(table):
            names.update(n for ix in insp.get_indexes(table) if (n := ix.get("name")))
    return sorted(n for n in names if n in OPTIONAL_INDEXES)


# Any constant: the key of the PostgreSQL advisory lock that serializes schema set-up.
_SCHEMA_LOCK_KEY = 7_240_001


@contextmanager
def schema_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that one process at a time gets, for schema set-up at start-up.

    Every uvicorn worker runs the app's start-up: with two workers, two processes create tables
    and indexes at once. SQLite would fail one with "database is locked" (a deferred transaction
    cannot wait to upgrade to a writer), PostgreSQL could fail one on a duplicate catalog entry.
    BEGIN IMMEDIATE (SQLite) and an advisory lock (PostgreSQL) make the second wait instead.
    """
    with engine.execution_options(**{_WRITE: True}).begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
        yield conn


def set_indexes(engine: Engine, present: bool) -> list[str]:
    """Create (or drop) the optimized variant's indexes; returns the ones that exist after."""
    with schema_transaction(engine) as conn:
        for name, (table, columns) in OPTIONAL_INDEXES.items():
            if present:
                conn.execute(text(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})"))
            else:
                conn.execute(text(f"DROP INDEX IF EXISTS {name}"))
        if present and engine.dialect.name == "sqlite":
            conn.execute(text("ANALYZE"))
    return existing_indexes(engine)
