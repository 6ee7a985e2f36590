"""The gateway in front of a healthy catalog: same answers, one request id, honest timings."""

from __future__ import annotations

import uuid

import httpx
import pytest


def test_same_request_id_in_both_services_logs(gateway, catalog, log_lines):
    rid = f"gw-{uuid.uuid4().hex[:12]}"
    r = httpx.get(f"{gateway.url}/products/4", headers={"X-Request-ID": rid})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == rid
    assert r.json() == httpx.get(f"{catalog.url}/products/4").json()
    (gw_line,) = log_lines(gateway.log_file, rid)
    (cat_line,) = log_lines(catalog.log_file, rid)
    assert gw_line["service"] == "gateway" and cat_line["service"] == "catalog"
    assert gw_line["route"] == cat_line["route"] == "/products/{product_id}"
    assert gw_line["upstream_attempts"] == 1
    assert gw_line["upstream_status"] == 200
    assert cat_line["db_queries"] >= 1
    # The catalog's time is inside the gateway's upstream time, which is inside its total.
    assert cat_line["duration_ms"] <= gw_line["upstream_ms"] <= gw_line["duration_ms"]


def test_server_timing_has_an_upstream_entry(gateway):
    r = httpx.get(f"{gateway.url}/categories/2/top", params={"limit": 3})
    assert r.status_code == 200
    assert len(r.json()["products"]) == 3
    entries = dict(part.strip().split(";dur=") for part in r.headers["server-timing"].split(","))
    assert float(entries["upstream"]) > 0
    assert float(entries["upstream"]) <= float(entries["app"])


def test_list_passes_the_query_string(gateway, catalog):
    params = {"limit": 5, "category": 2, "min_price": 5}
    via = httpx.get(f"{gateway.url}/products", params=params)
    direct = httpx.get(f"{catalog.url}/products", params=params)
    assert via.status_code == 200
    assert via.json() == direct.json()
    assert all(item["category_id"] == 2 for item in via.json()["items"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/products/999999", 404),
        ("GET", "/products?limit=0", 422),
        ("GET", "/products?min_price=10&max_price=1", 422),
        ("GET", "/categories/999999/top", 404),
        ("GET", "/products/abc", 422),
        ("POST", "/products/999999/reviews", 404),
        ("POST", "/products/1/reviews", 422),
    ],
)
def test_catalog_errors_pass_through_with_their_message(
    gateway, catalog, login, method, path, status
):
    body = {"rating": 3, "text": "x", "author": "a"} if path.endswith("999999/reviews") else {}
    kw = {"json": body, "headers": login(catalog)} if method == "POST" else {}
    via = httpx.request(method, gateway.url + path, **kw)
    direct = httpx.request(method, catalog.url + path, **kw)
    assert via.status_code == direct.status_code == status
    assert via.json() == direct.json()
    assert via.json()["detail"]


def test_authorization_is_forwarded_and_checked_by_the_catalog(gateway, catalog, login):
    body = {"rating": 4, "text": "needs a token", "author": "gw"}
    anonymous = httpx.post(f"{gateway.url}/products/13/reviews", json=body)
    viewer = httpx.post(
        f"{gateway.url}/products/13/reviews", json=body, headers=login(catalog, "viewer")
    )
    assert anonymous.status_code == 401, anonymous.text
    assert viewer.status_code == 403, viewer.text
    assert anonymous.json()["detail"] and viewer.json()["detail"]


def test_idempotency_key_is_forwarded(gateway, catalog, login):
    body = {"rating": 4, "text": f"via gateway {uuid.uuid4().hex}", "author": "gw"}
    headers = {"Idempotency-Key": uuid.uuid4().hex, **login(catalog)}
    first = httpx.post(f"{gateway.url}/products/13/reviews", json=body, headers=headers)
    again = httpx.post(f"{gateway.url}/products/13/reviews", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]


def test_gateway_health_and_metrics(gateway):
    health = httpx.get(f"{gateway.url}/healthz").json()
    assert health["status"] == "ok"
    assert health["circuit"] == "closed"
    httpx.get(f"{gateway.url}/products/2")
    text = httpx.get(f"{gateway.url}/metrics").text
    assert 'upstream_requests_total{method="GET",outcome="2xx"}' in text
    assert 'http_requests_total{method="GET",route="/products/{product_id}",status="2xx"}' in text
