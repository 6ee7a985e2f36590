"""Operational endpoints: health, Prometheus metrics, and which variant is running."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from perflab_services.catalog.core.db import existing_indexes

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz(request: Request) -> dict:
    catalog = request.app.state.catalog
    with catalog.db.read_session() as s:
        s.execute(text("SELECT 1"))
    return {"status": "ok", "service": "catalog"}


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    metrics = request.app.state.metrics
    if metrics is None:
        return Response("metrics are disabled in this variant\n", status_code=404)
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


@router.get("/variant")
def variant(request: Request) -> dict:
    settings = request.app.state.settings
    catalog = request.app.state.catalog
    return {
        "queries": settings.queries,
        "cache": settings.cache,
        "database": catalog.db.engine.dialect.name,
        "indexes": existing_indexes(catalog.db.engine),
    }
