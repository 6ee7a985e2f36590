"""The limit: a bare FastAPI app whose detail endpoint returns a constant.

`uvicorn --factory bench.bare_app:create_app`. Same route shape as the catalog's
`GET /products/{product_id}` (path parameter parsed and validated), an `async def` endpoint, no
middleware, no database, no cache: what FastAPI + uvicorn can do on this machine with nothing
else in the way. The catalog's fastest variant is measured against it, so the body is as long
as the catalog's (`BENCH_BARE_BODY_BYTES`): sending 1 kB costs more than sending 30 bytes, and
that part of the difference is not the catalog's doing.
"""

from __future__ import annotations

import json
import os

from fastapi import FastAPI, Response

BODY_BYTES_ENV = "BENCH_BARE_BODY_BYTES"


def constant_body(size: int) -> bytes:
    """A JSON object of exactly `size` bytes (at least the smallest one this shape allows)."""
    head = {"id": 1, "name": "constant", "pad": ""}
    empty = len(json.dumps(head, separators=(",", ":")))
    head["pad"] = "x" * max(0, size - empty)
    return json.dumps(head, separators=(",", ":")).encode()


def create_app() -> FastAPI:
    body = constant_body(int(os.environ.get(BODY_BYTES_ENV, "0") or 0))
    app = FastAPI(title="perflab bench: bare endpoint")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/products/{product_id}")
    async def product(product_id: int) -> Response:
        return Response(body, media_type="application/json")

    return app
