"""FastAPI dependencies: the worker's pooled catalog client, and the proxy call routes make."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from perflab_services.gateway.core.upstream import CatalogClient


def get_client(request: Request) -> CatalogClient:
    return request.app.state.catalog_client


ClientDep = Annotated[CatalogClient, Depends(get_client)]


async def proxy_get(client: CatalogClient, request: Request, path: str) -> Response:
    """GET `path` on the catalog with the caller's query string; answer with what it said."""
    upstream = await client.request(
        "GET",
        path,
        params=list(request.query_params.multi_items()),
        authorization=request.headers.get("authorization"),
    )
    return Response(upstream.body, status_code=upstream.status, media_type=upstream.content_type)
