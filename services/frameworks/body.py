"""The one document every framework app returns, so the comparison is about the frameworks.

It has the shape of the catalog's `GET /products/{id}` answer (`schemas.ProductDetail`: the
product, its category, a rating summary and the five latest reviews; a test validates it against
that schema) and a similar size: 1,300 bytes as compact JSON for product 7, where the catalog's
answers on the `small` dataset had a median of 1,252 bytes (every 7th product, 286 answers,
measured 2026-11-29 after the product page gained its rating histogram). It is built here, in
memory: see the package docstring for why no database is read. Only `id` follows the request, so
routing and the path parameter do their real work and a wrong route cannot pass for a right one.
"""

from __future__ import annotations

from typing import Any

_REVIEWS = [
    (5, "Solid build and quick delivery, would order this one again for the team.", "Ana"),
    (4, "Does what the page says; the manual could explain the settings better.", "Bruno"),
    (5, "Quiet, light and easy to carry around, the battery lasts all day long.", "Chen"),
    (3, "Works well enough, but the case scratches easily and the strap is short.", "Dara"),
    (4, "Good value for the price; setup took five minutes with the quick guide.", "Emeka"),
]

_PRODUCT: dict[str, Any] = {
    "id": 0,
    "name": "Portable Espresso Grinder 1",
    "description": (
        "A compact grinder with ceramic burrs and forty grind settings, from espresso to "
        "french press. Its aluminium body is light enough to travel with and strong enough "
        "for daily use; the burrs come apart for cleaning without tools."
    ),
    "price": 54.9,
    "stock": 120,
    "category_id": 3,
    "category": "Kitchen",
    "reviews": {"count": 57, "mean": 4.19, "histogram": {"1": 2, "2": 3, "3": 6, "4": 17, "5": 29}},
    "latest_reviews": [
        {
            "id": 1000 + i,
            "product_id": 0,
            "rating": rating,
            "text": text,
            "author": author,
            "created_at": f"2025-0{9 - i}-1{i}T10:2{i}:00",
        }
        for i, (rating, text, author) in enumerate(_REVIEWS)
    ],
}


def product_detail(product_id: int) -> dict[str, Any]:
    """The product page for `product_id`: the same document, with the requested id in it."""
    return {
        **_PRODUCT,
        "id": product_id,
        "latest_reviews": [{**r, "product_id": product_id} for r in _PRODUCT["latest_reviews"]],
    }
