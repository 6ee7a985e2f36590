"""The limit: a bare FastAPI app whose detail endpoint returns a constant.

`uvicorn --factory bench.bare_app:create_app`. Same route shape as the catalog's
`GET /products/{product_id}` (path parameter parsed and validated), no middleware, no database,
no cache: what FastAPI + uvicorn can do on this machine with nothing else in the way. The
catalog's fastest variant is measured against it.
"""

from __future__ import annotations

from fastapi import FastAPI, Response

_BODY = b'{"id": 1, "name": "constant"}'


def create_app() -> FastAPI:
    app = FastAPI(title="perflab bench: bare endpoint")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/products/{product_id}")
    async def product(product_id: int) -> Response:
        return Response(_BODY, media_type="application/json")

    return app
