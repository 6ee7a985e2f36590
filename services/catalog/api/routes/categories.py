"""Category endpoints: the best-rated products of a category (an aggregate, cacheable)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from perflab_services.catalog import schemas
from perflab_services.catalog.api.deps import cached_json, catalog

router = APIRouter(prefix="/categories", tags=["categories"])


@router.get("/{category_id}/top", response_model=schemas.CategoryTop)
async def category_top(
    category_id: int, request: Request, limit: Annotated[int, Query(ge=1, le=50)] = 10
) -> Response:
    service = catalog(request)
    return await cached_json("category", category_id, lambda cid: service.category_top(cid, limit))
