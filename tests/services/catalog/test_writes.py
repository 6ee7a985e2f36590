"""The write path under concurrency: every review lands exactly once, no "database is locked"."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from perflab import auth


async def _post_many(url: str, n: int, product_id: int, key: bool = False) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60, headers=auth.headers(url, "editor")) as client:
        tag = uuid.uuid4().hex[:8]

        async def one(i: int) -> httpx.Response:
            headers = {"Idempotency-Key": f"{tag}-{i}"} if key else {}
            return await client.post(
                f"{url}/products/{product_id}/reviews",
                json={"rating": 1 + i % 5, "text": f"concurrent {tag} {i}", "author": "load"},
                headers=headers,
            )

        return await asyncio.gather(*(one(i) for i in range(n)))


def _count(url: str, product_id: int) -> int:
    return httpx.get(f"{url}/products/{product_id}").json()["reviews"]["count"]


def test_twenty_concurrent_review_posts_all_land(optimized):
    before = _count(optimized.url, 11)
    responses = asyncio.run(_post_many(optimized.url, 20, 11))
    assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses]
    assert _count(optimized.url, 11) == before + 20


def test_idempotency_key_makes_retries_safe(optimized):
    before = _count(optimized.url, 12)
    body = {"rating": 4, "text": "once only", "author": "retry"}
    headers = {"Idempotency-Key": uuid.uuid4().hex, **auth.headers(optimized, "editor")}
    first = httpx.post(f"{optimized.url}/products/12/reviews", json=body, headers=headers)
    again = httpx.post(f"{optimized.url}/products/12/reviews", json=body, headers=headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert _count(optimized.url, 12) == before + 1


def test_idempotency_keys_belong_to_the_caller(optimized):
    """Another user's write with the same key is stored, not answered with the first review."""
    key = uuid.uuid4().hex
    body = {"rating": 5, "text": "same key, two users", "author": "scoped"}
    url = f"{optimized.url}/products/13/reviews"
    editor = httpx.post(
        url, json=body, headers={"Idempotency-Key": key, **auth.headers(optimized, "editor")}
    )
    admin = httpx.post(
        url, json=body, headers={"Idempotency-Key": key, **auth.headers(optimized, "admin")}
    )
    assert (editor.status_code, admin.status_code) == (201, 201), (editor.text, admin.text)
    assert editor.json()["id"] != admin.json()["id"]


def test_idempotency_key_reused_for_another_request_is_a_422(optimized):
    key = uuid.uuid4().hex
    headers = {"Idempotency-Key": key, **auth.headers(optimized, "editor")}
    body = {"rating": 3, "text": "first use", "author": "reuse"}
    first = httpx.post(f"{optimized.url}/products/14/reviews", json=body, headers=headers)
    assert first.status_code == 201
    before = _count(optimized.url, 15)
    for product, other in ((15, body), (14, {**body, "text": "another body"})):
        r = httpx.post(f"{optimized.url}/products/{product}/reviews", json=other, headers=headers)
        assert r.status_code == 422, r.text
        assert "Idempotency-Key" in r.json()["detail"]
    assert _count(optimized.url, 15) == before, "the refused write must not be stored"
