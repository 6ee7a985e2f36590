"""`add_routers` (services/common/routing.py): the same API as `include_router`, documented the
same way, with the routes on the app itself and the documentation pages after them."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Route

from perflab_services.catalog.api.routes import admin, auth, categories, ops, products
from perflab_services.common.routing import add_routers
from perflab_services.gateway.api.routes import categories as gw_categories
from perflab_services.gateway.api.routes import ops as gw_ops
from perflab_services.gateway.api.routes import products as gw_products

CATALOG = (
    products.router,
    products.reviews_router(),
    categories.router,
    ops.router,
    auth.router,
    admin.router,
)
GATEWAY = (gw_products.router, gw_categories.router, gw_ops.router)


@pytest.mark.parametrize("routers", [CATALOG, GATEWAY], ids=["catalog", "gateway"])
def test_the_openapi_document_is_the_one_include_router_gives(routers) -> None:
    included = FastAPI(title="t", version="1")
    for router in routers:
        included.include_router(router)
    added = FastAPI(title="t", version="1")
    add_routers(added, *routers)
    assert added.openapi() == included.openapi()
    assert len(added.openapi()["paths"]) >= 3


def test_routes_sit_on_the_app_before_the_documentation_pages() -> None:
    app = FastAPI()
    add_routers(app, products.router, ops.router)
    kinds = [type(r) for r in app.router.routes]
    first_doc = next(i for i, r in enumerate(app.router.routes) if not isinstance(r, APIRoute))
    assert all(issubclass(k, APIRoute) for k in kinds[:first_doc])
    assert all(
        isinstance(r, Route) and not isinstance(r, APIRoute) for r in app.router.routes[first_doc:]
    )
    paths = [r.path for r in app.router.routes[:first_doc]]
    assert paths[:3] == ["/products", "/products/{product_id}", "/products/{product_id}/brief"]


def test_an_app_with_added_routes_serves_them_and_its_docs() -> None:
    app = FastAPI()
    add_routers(app, gw_ops.router)
    with TestClient(app) as client:
        assert client.get("/openapi.json").status_code == 200
        assert client.get("/docs").status_code == 200
        assert client.get("/nowhere").status_code == 404


def test_only_api_routes_are_taken() -> None:
    from fastapi import APIRouter

    router = APIRouter()
    router.routes.append(Route("/plain", lambda request: None))
    with pytest.raises(TypeError, match="API routes only"):
        add_routers(FastAPI(), router)
