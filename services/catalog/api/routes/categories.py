"""Category endpoints: the best-rated products of a category (an aggregate, cacheable)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from perflab_services.catalog import schemas
from perflab_services.catalog.api.deps import cached_json, catalog
from perflab_services.catalog.api.security import ReaderRoute

# Anyone may read; a bad token is a 401 (`ReaderRoute`: the check without a dependency's cost).
router = APIRouter(prefix="/categories", tags=["categories"], route_class=ReaderRoute)


@router.get("/{category_id}/top", response_model=schemas.CategoryTop)
async def category_top(
    category_id: int, request: Request, limit: Annotated[int, Query(ge=1, le=50)] = 10
) -> Response:
    service = catalog(request)
    return await cached_json("category", category_id, lambda cid: service.category_top(cid, limit))
