"""Put the routers' routes on the app itself, ahead of the documentation pages.

`app.include_router(router)` (FastAPI 0.165) keeps each router as a layer of its own that the
app's router asks, per request, to match the path, then asks again to find the route and run
it. On the catalog's fastest read (a memory-cache hit, about 60 µs of Python) that double
match was the largest single cost after the socket writes: adding the routes directly, as an
app whose routes are declared with `@app.get` has them, took about a tenth off the app's own
time per request (bench/results/hotpath.md). What the routers declare (paths with their
prefix, tags, the route class, response models) is already on each route, so the app serves
and documents them exactly as before; a test compares the OpenAPI documents.

The documentation routes (`/openapi.json`, `/docs`, `/redoc`) go after the API's, so a request
for a product is not first compared with four paths nobody calls under load.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute


def add_routers(app: FastAPI, *routers: APIRouter) -> None:
    """Add each router's routes to `app`, in order, before the app's own (documentation) ones."""
    ours = [route for router in routers for route in router.routes]
    for route in ours:
        if not isinstance(route, APIRoute):
            raise TypeError(f"add_routers takes API routes only, not {route!r}")
    app.router.routes[:0] = ours
