"""The catalog's business logic: what to cache, what a write invalidates, how bodies are made.

Routes stay thin: they validate input and call these functions. Cached bodies are stored as
ready-made JSON bytes, so a cache hit costs one look-up and no serialisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from perflab_services.catalog import repository, schemas
from perflab_services.catalog.core.db import Database


def product_key(product_id: int) -> str:
    return f"product:{product_id}"


def category_key(category_id: int) -> str:
    return f"category:{category_id}:top"


@dataclass
class Catalog:
    db: Database
    repo: repository.Repository
    cache: Any

    def product_detail(self, product_id: int) -> bytes:
        def load() -> bytes:
            with self.db.read_session() as s:
                return self.repo.get_product(s, product_id).model_dump_json().encode()

        return self.cache.get_or_load(product_key(product_id), "detail", load)

    def category_top(self, category_id: int, limit: int) -> bytes:
        def load() -> bytes:
            with self.db.read_session() as s:
                return self.repo.category_top(s, category_id, limit).model_dump_json().encode()

        return self.cache.get_or_load(category_key(category_id), str(limit), load)

    def list_products(self, s: Session, filters: schemas.ProductFilters) -> schemas.ProductPage:
        return self.repo.list_products(s, filters)

    def add_review(
        self, product_id: int, review: schemas.ReviewIn, idempotency_key: str | None
    ) -> tuple[schemas.ReviewOut, bool]:
        with self.db.write_session() as s:
            out, category_id, created = repository.add_review(
                s, product_id, review, idempotency_key
            )
        # Invalidate after the commit: a reader that misses now loads the new review.
        self.cache.invalidate(product_key(product_id), category_key(category_id))
        return out, created
