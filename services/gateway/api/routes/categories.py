"""Category endpoints, proxied to the catalog."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from perflab_services.gateway.api.deps import ClientDep, proxy_get

router = APIRouter(prefix="/categories", tags=["categories"])


@router.get("/{category_id}/top")
async def category_top(category_id: int, request: Request, client: ClientDep) -> Response:
    return await proxy_get(client, request, f"/categories/{category_id}/top")
