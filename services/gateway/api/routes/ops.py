"""Operational endpoints: health (the gateway's own, with the breaker's state) and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz(request: Request) -> dict:
    # Liveness of the gateway itself: it does not call the catalog, so a catalog outage does
    # not get the gateway restarted; the breaker's state says how the catalog looks from here.
    client = request.app.state.catalog_client
    return {
        "status": "ok",
        "service": "gateway",
        "catalog_url": client.settings.catalog_url,
        "circuit": client.breaker.state,
    }


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    metrics = request.app.state.metrics
    if metrics is None:
        return Response("metrics are disabled in this variant\n", status_code=404)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
