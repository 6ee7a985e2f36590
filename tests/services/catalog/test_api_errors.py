"""Bad input gets a 4xx with a message, never a 500."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/products?limit=0", 422),
        ("/products?limit=101", 422),
        ("/products?limit=abc", 422),
        ("/products?min_price=10&max_price=1", 422),
        ("/products?min_price=-1", 422),
        ("/products/abc", 422),
        ("/products/999999999", 404),
        ("/products/99999999999999999999999", 404),
        ("/products/0", 404),
        ("/categories/999999/top", 404),
        ("/categories/1/top?limit=1000", 422),
        ("/nope", 404),
    ],
)
def test_bad_reads(optimized, naive, path, status):
    for svc in (optimized, naive):
        r = httpx.get(svc.url + path)
        assert r.status_code == status, (svc.name, path, r.text)
        assert r.json()["detail"], "every error says what is wrong"


@pytest.mark.parametrize(
    "body",
    [
        {"rating": 6, "text": "x", "author": "a"},
        {"rating": 0, "text": "x", "author": "a"},
        {"rating": 3, "text": "", "author": "a"},
        {"rating": 3, "text": "x" * 2001, "author": "a"},
        {"rating": 3, "text": "x"},
        {"rating": 3, "text": "x", "author": "a", "admin": True},
        "not an object",
    ],
)
def test_bad_review_bodies(optimized, login, body):
    r = httpx.post(f"{optimized.url}/products/1/reviews", json=body, headers=login(optimized))
    assert r.status_code == 422
    assert "detail" in r.json()


def test_review_for_unknown_product_is_404(optimized, login):
    r = httpx.post(
        f"{optimized.url}/products/999999/reviews",
        json={"rating": 3, "text": "x", "author": "a"},
        headers=login(optimized),
    )
    assert r.status_code == 404
    assert "not found" in r.json()["detail"]


def test_malformed_json_is_422(optimized, login):
    r = httpx.post(
        f"{optimized.url}/products/1/reviews",
        content=b"{not json",
        headers={"content-type": "application/json", **login(optimized)},
    )
    assert r.status_code == 422
