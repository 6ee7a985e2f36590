"""Product endpoints: list with filters and pagination, detail, and the review write path.

The review write is built per app (`reviews_router`) around the app's review model: the shipped
one, or a plug-in's (the classroom's validation exercise runs the student's model this way).

The detail and the review write are `async def`: a cache hit is answered on the event loop, and
the database work runs in the thread pool only when there is some (`service.py`). The list
reads the database on every request, so it stays a plain `def` (FastAPI runs it in the pool).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from pydantic import BaseModel

from perflab_services.catalog import schemas
from perflab_services.catalog.api.deps import MAX_ID, SessionDep, cached_json, catalog
from perflab_services.catalog.api.security import Editor, ReaderRoute
from perflab_services.catalog.repository import IdempotencyConflict, NotFound

# Anyone may read; a bad token is a 401 (`ReaderRoute`: the check without a dependency's cost).
router = APIRouter(prefix="/products", tags=["products"], route_class=ReaderRoute)


@router.get("", response_model=schemas.ProductPage)
def list_products(
    request: Request,
    session: SessionDep,
    category: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    min_price: Annotated[float | None, Query(ge=0, le=1e9)] = None,
    max_price: Annotated[float | None, Query(ge=0, le=1e9)] = None,
    q: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    cursor: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
) -> schemas.ProductPage:
    if min_price is not None and max_price is not None and min_price > max_price:
        raise HTTPException(422, "min_price must not be greater than max_price")
    filters = schemas.ProductFilters(
        category=category,
        min_price=min_price,
        max_price=max_price,
        q=q,
        limit=limit,
        offset=offset,
        cursor=cursor,
    )
    return catalog(request).list_products(session, filters)


@router.get("/{product_id}", response_model=schemas.ProductDetail)
async def get_product(product_id: int, request: Request) -> Response:
    return await cached_json("product", product_id, catalog(request).product_detail)


@router.get("/{product_id}/brief", response_model=schemas.ProductBrief)
async def get_product_brief(product_id: int, request: Request) -> Response:
    """The product without its reviews: a primary-key look-up, about as cheap for the database
    as a Redis round trip is, so a cache buys little here (the caching lesson's counter-example)."""
    return await cached_json("product", product_id, catalog(request).product_brief)


def _as_stored(review: BaseModel) -> schemas.ReviewIn:
    """The review to store: ours as it is; a plug-in model's fields as they came out of it,
    unchecked (`model_construct`): no second validation hides what the model let through."""
    if isinstance(review, schemas.ReviewIn):
        return review
    fields = review.model_dump()
    stored: dict[str, Any] = {k: fields.get(k) for k in ("rating", "text", "author")}
    return schemas.ReviewIn.model_construct(**stored)


def reviews_router(model: type[BaseModel] = schemas.ReviewIn) -> APIRouter:
    """`POST /products/{product_id}/reviews` with `model` as its body: the shipped `ReviewIn`, or
    a plug-in's model (`review_model_plugin`, core/plugins.py). Whatever `model` accepts is
    stored as it comes out of it, with no second check behind it: the model is the service's
    only validation of a review, so what a student's model lets through is what gets stored.
    A router per app, so two apps in one process may validate differently."""
    reviews = APIRouter(prefix="/products", tags=["products"], route_class=ReaderRoute)

    async def add_review(
        product_id: int,
        review: BaseModel,  # the app's model (set below)
        request: Request,
        response: Response,
        who: Editor,
        idempotency_key: Annotated[str | None, Header(min_length=1, max_length=80)] = None,
    ) -> schemas.ReviewOut:
        if not 1 <= product_id <= MAX_ID:
            raise HTTPException(404, f"product {product_id} not found")
        try:
            out, created = await catalog(request).add_review(
                product_id, _as_stored(review), idempotency_key, owner=who.subject
            )
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except IdempotencyConflict as exc:
            raise HTTPException(422, str(exc)) from None
        if not created:
            response.status_code = 200
        return out

    # FastAPI reads the body's type from the annotation: make it the model this app was given.
    add_review.__annotations__["review"] = model
    reviews.add_api_route(
        "/{product_id}/reviews",
        add_review,
        methods=["POST"],
        response_model=schemas.ReviewOut,
        status_code=201,
    )
    return reviews
