"""The catalog's business logic: what to cache, what a write invalidates, how bodies are made.

Routes stay thin: they validate input and call these functions. Cached bodies are stored as
ready-made JSON bytes, so a cache hit costs one look-up and no serialisation. The cached reads
are async: a hit never leaves the event loop; the database work of a miss (and of a write)
runs in the thread pool, since SQLAlchemy's sessions here are blocking.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from perflab_services.catalog import repository, schemas
from perflab_services.catalog.core.cache import Cache, in_thread
from perflab_services.catalog.core.db import Database


def product_key(product_id: int) -> str:
    return f"product:{product_id}"


def category_key(category_id: int) -> str:
    return f"category:{category_id}:top"


@dataclass
class Catalog:
    db: Database
    repo: repository.Repository
    cache: Cache

    async def product_detail(self, product_id: int) -> bytes:
        def query() -> bytes:
            with self.db.read_session() as s:
                return self.repo.get_product(s, product_id).model_dump_json().encode()

        return await self.cache.get_or_load(product_key(product_id), "detail", query)

    async def product_brief(self, product_id: int) -> bytes:
        def query() -> bytes:
            with self.db.read_session() as s:
                return self.repo.get_brief(s, product_id).model_dump_json().encode()

        return await self.cache.get_or_load(product_key(product_id), "brief", query)

    async def category_top(self, category_id: int, limit: int) -> bytes:
        def query() -> bytes:
            with self.db.read_session() as s:
                return self.repo.category_top(s, category_id, limit).model_dump_json().encode()

        return await self.cache.get_or_load(category_key(category_id), str(limit), query)

    def list_products(self, s: Session, filters: schemas.ProductFilters) -> schemas.ProductPage:
        return self.repo.list_products(s, filters)

    async def add_review(
        self,
        product_id: int,
        review: schemas.ReviewIn,
        idempotency_key: str | None,
        owner: str = "",
    ) -> tuple[schemas.ReviewOut, bool]:
        def write() -> tuple[schemas.ReviewOut, int, bool]:
            with self.db.write_session() as s:
                return repository.add_review(s, product_id, review, idempotency_key, owner)

        out, category_id, created = await in_thread(write)
        # Invalidate after the commit: a reader that misses now loads the new review.
        await self.cache.invalidate(product_key(product_id), category_key(category_id))
        return out, created
