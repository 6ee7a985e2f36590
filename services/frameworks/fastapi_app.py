"""The endpoint in FastAPI, twice: a `def` handler and an `async def` one, served by uvicorn.

`uvicorn --factory perflab_services.frameworks.fastapi_app:create_def_app` (or
`create_async_app`). The two apps differ in one keyword and that is the lesson: FastAPI runs a
`def` handler in a thread pool (so blocking code cannot stall the event loop), paying a hand-off
to a worker thread and back per request; an `async def` handler runs on the event loop itself,
which is cheaper, and correct only when the handler never blocks. This one never does.

No `response_model`: the handler returns a dict, which FastAPI turns into JSON with
`jsonable_encoder` and `JSONResponse`, its default path, as the other frameworks use theirs.
Declaring a response model would add pydantic validation of the output (safer, slower); that is
not part of this comparison.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from perflab_services.common.watchdog import start_parent_watchdog
from perflab_services.frameworks.body import product_detail


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    start_parent_watchdog()  # exit with the lab that started us
    yield


def _app(flavour: str) -> FastAPI:
    app = FastAPI(title=f"perflab frameworks: FastAPI {flavour}", lifespan=_lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "framework": f"fastapi-{flavour}"}

    return app


def create_def_app() -> FastAPI:
    app = _app("def")

    @app.get("/products/{product_id}", response_model=None)
    def product(product_id: int) -> dict[str, Any]:
        return product_detail(product_id)

    return app


def create_async_app() -> FastAPI:
    app = _app("async")

    @app.get("/products/{product_id}", response_model=None)
    async def product(product_id: int) -> dict[str, Any]:
        return product_detail(product_id)

    return app
