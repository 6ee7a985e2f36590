"""Product endpoints: list with filters and pagination, detail, and the review write path."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Response

from perflab_services.catalog import schemas
from perflab_services.catalog.api.deps import CatalogDep, SessionDep
from perflab_services.catalog.api.security import Editor
from perflab_services.catalog.repository import NotFound

router = APIRouter(prefix="/products", tags=["products"])


@router.get("", response_model=schemas.ProductPage)
def list_products(
    catalog: CatalogDep,
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
    return catalog.list_products(session, filters)


@router.get("/{product_id}", response_model=schemas.ProductDetail)
def get_product(product_id: int, catalog: CatalogDep) -> Response:
    if not 1 <= product_id <= 2**31 - 1:
        raise HTTPException(404, f"product {product_id} not found")
    try:
        body = catalog.product_detail(product_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(body, media_type="application/json")


@router.post("/{product_id}/reviews", response_model=schemas.ReviewOut, status_code=201)
def add_review(
    product_id: int,
    review: schemas.ReviewIn,
    catalog: CatalogDep,
    response: Response,
    _: Editor,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=80)] = None,
) -> schemas.ReviewOut:
    if not 1 <= product_id <= 2**31 - 1:
        raise HTTPException(404, f"product {product_id} not found")
    try:
        out, created = catalog.add_review(product_id, review, idempotency_key)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    if not created:
        response.status_code = 200
    return out
