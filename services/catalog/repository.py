"""All data access of the catalog, in its two variants.

`NaiveRepository` is the code many services start with: it walks ORM relationships in Python,
so one list of N products runs 1 + 2N statements (the N+1 problem), fetches whole rows, and
computes aggregates in Python. `OptimizedRepository` answers the same questions with eager
loading, keyset pagination, only the needed columns and aggregates in SQL: at most 3 statements
whatever the page size. Both return the same response models, so any difference the lab measures
is the data access alone.

The product page (`get_product`) is what a shop shows: the product, the rating summary (count,
mean, reviews per star) and the latest reviews. Its cost grows with the product's reviews, and
the popular products have thousands (`datagen.py`): the naive variant loads every one of them
as an object to count them in Python; the optimized one counts per star in SQL over the
`(product_id, rating)` index and reads only the latest few through `(product_id, created_at)`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload, with_parent

from perflab_services.catalog import schemas
from perflab_services.catalog.models import Category, Product, Review

LATEST_REVIEWS = 5
STARS = (1, 2, 3, 4, 5)


class NotFound(Exception):
    """The id does not exist: the route turns this into a 404."""


class Repository(Protocol):
    def list_products(self, s: Session, f: schemas.ProductFilters) -> schemas.ProductPage: ...
    def get_product(self, s: Session, product_id: int) -> schemas.ProductDetail: ...
    def get_brief(self, s: Session, product_id: int) -> schemas.ProductBrief: ...
    def category_top(self, s: Session, category_id: int, limit: int) -> schemas.CategoryTop: ...


def _filtered(stmt: Select, f: schemas.ProductFilters) -> Select:
    if f.category is not None:
        stmt = stmt.where(Product.category_id == f.category)
    if f.min_price is not None:
        stmt = stmt.where(Product.price >= f.min_price)
    if f.max_price is not None:
        stmt = stmt.where(Product.price <= f.max_price)
    if f.q:
        stmt = stmt.where(Product.name.ilike(f"%{f.q}%"))
    return stmt


def _summary(ratings: list[int]) -> schemas.RatingSummary:
    mean = round(sum(ratings) / len(ratings), 3) if ratings else None
    return schemas.RatingSummary(count=len(ratings), mean=mean)


def _breakdown(per_star: dict[int, int]) -> schemas.RatingBreakdown:
    """Count, mean and histogram from {star: reviews}; the same arithmetic in both variants."""
    count = sum(per_star.values())
    total = sum(star * n for star, n in per_star.items())
    return schemas.RatingBreakdown(
        count=count,
        mean=round(total / count, 3) if count else None,
        histogram={star: per_star.get(star, 0) for star in STARS},
    )


# --- statements ------------------------------------------------------------------------------
# The repositories build their SQL with these functions, so `perflab_services.catalog.plans` can
# ask the database how it would run exactly the same statements without running the endpoint.


def naive_page(f: schemas.ProductFilters) -> Select:
    stmt = _filtered(select(Product), f).order_by(Product.id)
    if f.cursor is not None:
        stmt = stmt.where(Product.id > f.cursor)
    return stmt.offset(f.offset).limit(f.limit)


def lazy_load(relationship: Any, parent: object) -> Select:
    """The SELECT the ORM emits when code touches `parent.<relationship>` (lazy loading)."""
    target = relationship.property.mapper.class_
    return select(target).where(with_parent(parent, relationship))


def optimized_page(f: schemas.ProductFilters) -> Select:
    stmt = _filtered(
        select(Product.id, Product.name, Product.price, Product.category_id, Category.name)
        .join(Category, Category.id == Product.category_id)
        .order_by(Product.id),
        f,
    )
    if f.cursor is not None:
        stmt = stmt.where(Product.id > f.cursor)
    if f.offset:
        stmt = stmt.offset(f.offset)
    return stmt.limit(f.limit)


def ratings(ids: list[int]) -> Select:
    return (
        select(Review.product_id, func.count(Review.id), func.avg(Review.rating))
        .where(Review.product_id.in_(ids))
        .group_by(Review.product_id)
    )


def product_with_category(product_id: int) -> Select:
    return select(Product).options(joinedload(Product.category)).where(Product.id == product_id)


def brief(product_id: int) -> Select:
    return (
        select(Product.id, Product.name, Product.price, Product.stock, Product.category_id)
        .add_columns(Category.name)
        .join(Category, Category.id == Product.category_id)
        .where(Product.id == product_id)
    )


def rating_histogram(product_id: int) -> Select:
    """Reviews per star of one product: an index-only scan of `(product_id, rating)`."""
    return (
        select(Review.rating, func.count())
        .where(Review.product_id == product_id)
        .group_by(Review.rating)
    )


def latest_reviews(product_id: int) -> Select:
    return (
        select(Review)
        .where(Review.product_id == product_id)
        .order_by(Review.created_at.desc(), Review.id.desc())
        .limit(LATEST_REVIEWS)
    )


def category_name(category_id: int) -> Select:
    return select(Category.name).where(Category.id == category_id)


def top_products(category_id: int, limit: int) -> Select:
    mean = func.avg(Review.rating)
    count = func.count(Review.id)
    return (
        select(Product.id, Product.name, Product.price, count, mean)
        .join(Review, Review.product_id == Product.id)
        .where(Product.category_id == category_id)
        .group_by(Product.id, Product.name, Product.price)
        .order_by(mean.desc(), count.desc(), Product.id)
        .limit(limit)
    )


class NaiveRepository:
    """Lazy loading, offset pagination, whole rows, aggregates in Python."""

    def list_products(self, s: Session, f: schemas.ProductFilters) -> schemas.ProductPage:
        products = s.scalars(naive_page(f)).all()
        items = [
            schemas.ProductSummary(
                id=p.id,
                name=p.name,
                price=p.price,
                category_id=p.category_id,
                category=p.category.name,  # one SELECT per product (N+1)
                reviews=_summary([r.rating for r in p.reviews]),  # and another
            )
            for p in products
        ]
        next_offset = f.offset + len(items) if len(items) == f.limit else None
        return schemas.ProductPage(items=items, next_offset=next_offset)

    def get_product(self, s: Session, product_id: int) -> schemas.ProductDetail:
        p = s.get(Product, product_id)
        if p is None:
            raise NotFound(f"product {product_id} not found")
        reviews = list(p.reviews)  # every review of the product, as objects
        latest = sorted(reviews, key=lambda r: (r.created_at, r.id), reverse=True)
        return schemas.ProductDetail(
            **self._brief(p).model_dump(),
            description=p.description,
            reviews=_breakdown(Counter(r.rating for r in reviews)),
            latest_reviews=[schemas.ReviewOut.model_validate(r) for r in latest[:LATEST_REVIEWS]],
        )

    def get_brief(self, s: Session, product_id: int) -> schemas.ProductBrief:
        p = s.get(Product, product_id)
        if p is None:
            raise NotFound(f"product {product_id} not found")
        return self._brief(p)

    @staticmethod
    def _brief(p: Product) -> schemas.ProductBrief:
        return schemas.ProductBrief(
            id=p.id,
            name=p.name,
            price=p.price,
            stock=p.stock,
            category_id=p.category_id,
            category=p.category.name,
        )

    def category_top(self, s: Session, category_id: int, limit: int) -> schemas.CategoryTop:
        c = s.get(Category, category_id)
        if c is None:
            raise NotFound(f"category {category_id} not found")
        scored = []
        for p in c.products:
            summary = _summary([r.rating for r in p.reviews])
            scored.append((summary.mean or 0.0, summary.count, -p.id, p, summary))
        scored.sort(key=lambda t: t[:3], reverse=True)
        top = [
            schemas.TopProduct(id=p.id, name=p.name, price=p.price, reviews=summary)
            for *_, p, summary in scored[:limit]
        ]
        return schemas.CategoryTop(category_id=c.id, category=c.name, products=top)


class OptimizedRepository:
    """Eager loading, keyset pagination, only needed columns, aggregates in SQL."""

    def _ratings(self, s: Session, ids: list[int]) -> dict[int, schemas.RatingSummary]:
        if not ids:
            return {}
        rows = s.execute(ratings(ids)).all()
        return {
            pid: schemas.RatingSummary(count=n, mean=round(float(avg), 3)) for pid, n, avg in rows
        }

    def list_products(self, s: Session, f: schemas.ProductFilters) -> schemas.ProductPage:
        rows = s.execute(optimized_page(f)).all()
        ratings = self._ratings(s, [r[0] for r in rows])
        empty = schemas.RatingSummary(count=0, mean=None)
        items = [
            schemas.ProductSummary(
                id=pid,
                name=name,
                price=price,
                category_id=cid,
                category=cname,
                reviews=ratings.get(pid, empty),
            )
            for pid, name, price, cid, cname in rows
        ]
        next_cursor = items[-1].id if len(items) == f.limit else None
        return schemas.ProductPage(items=items, next_cursor=next_cursor)

    def get_product(self, s: Session, product_id: int) -> schemas.ProductDetail:
        p = s.scalars(product_with_category(product_id)).one_or_none()
        if p is None:
            raise NotFound(f"product {product_id} not found")
        per_star = {star: n for star, n in s.execute(rating_histogram(product_id)).all()}
        latest = s.scalars(latest_reviews(product_id)).all()
        return schemas.ProductDetail(
            id=p.id,
            name=p.name,
            price=p.price,
            stock=p.stock,
            category_id=p.category_id,
            category=p.category.name,
            description=p.description,
            reviews=_breakdown(per_star),
            latest_reviews=[schemas.ReviewOut.model_validate(r) for r in latest],
        )

    def get_brief(self, s: Session, product_id: int) -> schemas.ProductBrief:
        row = s.execute(brief(product_id)).one_or_none()
        if row is None:
            raise NotFound(f"product {product_id} not found")
        pid, name, price, stock, category_id, category = row
        return schemas.ProductBrief(
            id=pid, name=name, price=price, stock=stock, category_id=category_id, category=category
        )

    def category_top(self, s: Session, category_id: int, limit: int) -> schemas.CategoryTop:
        name = s.scalar(category_name(category_id))
        if name is None:
            raise NotFound(f"category {category_id} not found")
        rows = s.execute(top_products(category_id, limit)).all()
        top = [
            schemas.TopProduct(
                id=pid,
                name=pname,
                price=price,
                reviews=schemas.RatingSummary(count=n, mean=round(float(avg), 3)),
            )
            for pid, pname, price, n, avg in rows
        ]
        return schemas.CategoryTop(category_id=category_id, category=name, products=top)


class IdempotencyConflict(Exception):
    """An `Idempotency-Key` this caller already used for a different request."""


def scoped_key(owner: str, key: str) -> str:
    """The stored form of an `Idempotency-Key`: scoped to the caller who sent it (the token's
    subject), so one user's key can never answer for, or silently swallow, another's write."""
    return hashlib.sha256(f"{owner}\n{key}".encode("utf-8", "surrogatepass")).hexdigest()


def _replay(existing: Review, product_id: int, review: schemas.ReviewIn) -> schemas.ReviewOut:
    """The first attempt's review, if this request is the same one again; else a conflict."""
    first = (existing.product_id, existing.rating, existing.text, existing.author)
    if first != (product_id, review.rating, review.text, review.author):
        raise IdempotencyConflict(
            "Idempotency-Key already used for a different request: send a new key"
        )
    return schemas.ReviewOut.model_validate(existing)


def add_review(
    s: Session,
    product_id: int,
    review: schemas.ReviewIn,
    idempotency_key: str | None = None,
    owner: str = "",
) -> tuple[schemas.ReviewOut, int, bool]:
    """Insert a review; returns (review, category_id, created). Same path in both variants.

    With an idempotency key, a retried POST returns the review the first attempt stored instead of
    storing it twice. Keys are the caller's own (`scoped_key`), and a key reused for a different
    request (another product, another body) is refused with `IdempotencyConflict` (a 422, as the
    IETF draft on the Idempotency-Key header has it) instead of returning the other review.
    """
    stored_key = scoped_key(owner, idempotency_key) if idempotency_key else None
    if stored_key:
        existing = s.scalar(select(Review).where(Review.idempotency_key == stored_key))
        if existing is not None:
            out = _replay(existing, product_id, review)
            cat = s.scalar(select(Product.category_id).where(Product.id == existing.product_id))
            return out, int(cat or 0), False
    category_id = s.scalar(select(Product.category_id).where(Product.id == product_id))
    if category_id is None:
        raise NotFound(f"product {product_id} not found")
    row = Review(
        product_id=product_id,
        rating=review.rating,
        text=review.text,
        author=review.author,
        created_at=datetime.now(UTC).replace(tzinfo=None),
        idempotency_key=stored_key,
    )
    s.add(row)
    try:
        s.commit()
    except IntegrityError:
        # A concurrent retry with the same key won the race: return what it stored.
        s.rollback()
        if not stored_key:
            raise
        existing = s.scalar(select(Review).where(Review.idempotency_key == stored_key))
        if existing is None:
            raise
        return _replay(existing, product_id, review), category_id, False
    return schemas.ReviewOut.model_validate(row), category_id, True


def repository_for(variant: str) -> Repository:
    return OptimizedRepository() if variant == "optimized" else NaiveRepository()
