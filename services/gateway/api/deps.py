"""FastAPI dependencies: the worker's pooled catalog client, and the proxy call routes make."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from perflab_services.common.clients import client_host
from perflab_services.gateway.core.upstream import CatalogClient, UpstreamResponse


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
        forwarded_for=client_of(request),
    )
    return answer(upstream)


def client_of(request: Request) -> str:
    """The caller's address, which the gateway names to the catalog (X-Forwarded-For)."""
    return client_host(request.scope)


def answer(upstream: UpstreamResponse) -> Response:
    """The catalog's answer, as the gateway's: status, body, type and any Retry-After."""
    headers = {"retry-after": upstream.retry_after} if upstream.retry_after else None
    return Response(
        upstream.body,
        status_code=upstream.status,
        media_type=upstream.content_type,
        headers=headers,
    )
