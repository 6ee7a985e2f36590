"""Product endpoints, proxied to the catalog. The catalog validates; its 4xx pass through."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from perflab_services.gateway.api.deps import ClientDep, answer, client_of, proxy_get

router = APIRouter(prefix="/products", tags=["products"])


@router.get("")
async def list_products(request: Request, client: ClientDep) -> Response:
    return await proxy_get(client, request, "/products")


@router.get("/{product_id}")
async def get_product(product_id: int, request: Request, client: ClientDep) -> Response:
    return await proxy_get(client, request, f"/products/{product_id}")


@router.post("/{product_id}/reviews", status_code=201)
async def add_review(
    product_id: int,
    request: Request,
    client: ClientDep,
    idempotency_key: Annotated[str | None, Header(max_length=80)] = None,
) -> Response:
    body = await request.body()  # bounded while it streams in (BodySizeLimitMiddleware)
    upstream = await client.request(
        "POST",
        f"/products/{product_id}/reviews",
        content=body,
        content_type=request.headers.get("content-type", "application/json"),
        idempotency_key=idempotency_key,
        authorization=request.headers.get("authorization"),
        forwarded_for=client_of(request),
    )
    return answer(upstream)
