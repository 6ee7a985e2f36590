"""Category endpoints: the best-rated products of a category (an aggregate, cacheable)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from perflab_services.catalog import schemas
from perflab_services.catalog.api.deps import catalog
from perflab_services.catalog.repository import NotFound

router = APIRouter(prefix="/categories", tags=["categories"])


@router.get("/{category_id}/top", response_model=schemas.CategoryTop)
async def category_top(
    category_id: int, request: Request, limit: Annotated[int, Query(ge=1, le=50)] = 10
) -> Response:
    if not 1 <= category_id <= 2**31 - 1:
        raise HTTPException(404, f"category {category_id} not found")
    try:
        body = await catalog(request).category_top(category_id, limit)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(body, media_type="application/json")
