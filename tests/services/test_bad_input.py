"""Inputs that once made the services answer 500 (issue 17): each is a 4xx with a JSON message.

Python's `json` reads `NaN`, `Infinity` and `1e400` (a float overflow) as floats and `"\\ud800"`
as a string holding a lone surrogate; neither can be written back as JSON or UTF-8, so an error
answer that echoes the input failed to encode. A body nested a thousand levels deep overflows
the parser's recursion. Each attack goes to the catalog directly and, where the gateway serves
the route, through the gateway (which passes the catalog's answer on).
"""

from __future__ import annotations

import httpx
import pytest

DEEP = b"[" * 5000 + b"]" * 5000
DEEP_OBJECT = b'{"a":' * 5000 + b"1" + b"}" * 5000

ATTACKS = {
    # name: (method, path, raw JSON body, user, through the gateway too)
    "login-deep-list": ("POST", "/auth/token", DEEP, None, False),
    "login-deep-object": ("POST", "/auth/token", DEEP_OBJECT, None, False),
    "login-lone-surrogate-username": (
        "POST",
        "/auth/token",
        b'{"username": "\\ud800", "password": "x"}',
        None,
        False,
    ),
    "login-lone-surrogate-password": (
        "POST",
        "/auth/token",
        b'{"username": "editor", "password": "\\udc00"}',
        None,
        False,
    ),
    "login-nan": ("POST", "/auth/token", b'{"username": NaN, "password": 1e400}', None, False),
    "review-deep": ("POST", "/products/1/reviews", DEEP_OBJECT, "editor", True),
    "review-deep-list": ("POST", "/products/1/reviews", b"[" * 900 + b"]" * 900, "editor", True),
    **{
        f"review-rating-{value.decode()}": (
            "POST",
            "/products/1/reviews",
            b'{"rating": ' + value + b', "text": "t", "author": "a"}',
            "editor",
            True,
        )
        for value in (b"NaN", b"Infinity", b"-Infinity", b"1e400")
    },
    "review-lone-surrogate": (
        "POST",
        "/products/1/reviews",
        b'{"rating": 4, "text": "\\ud800", "author": "a"}',
        "editor",
        True,
    ),
    "review-lone-surrogate-key": (
        "POST",
        "/products/1/reviews",
        b'{"rating": 4, "text": "t", "author": "a", "\\udfff": 1}',
        "editor",
        True,
    ),
    **{
        f"faults-{value.decode()}": (
            "PUT",
            "/admin/faults",
            b'{"latency_ms": ' + value + b"}",
            "admin",
            False,
        )
        for value in (b"NaN", b"Infinity", b"1e400")
    },
}


def _cases():
    for name, (method, path, body, user, via_gateway) in ATTACKS.items():
        yield pytest.param("edge_catalog", method, path, body, user, id=f"catalog-{name}")
        if via_gateway:
            yield pytest.param("edge_gateway", method, path, body, user, id=f"gateway-{name}")


@pytest.mark.parametrize(("target", "method", "path", "body", "user"), list(_cases()))
def test_bad_input_is_a_4xx_json_message(
    request, edge_catalog, login, target, method, path, body, user
):
    svc = request.getfixturevalue(target)
    headers = {"content-type": "application/json", **(login(edge_catalog, user) if user else {})}
    r = httpx.request(method, svc.url + path, content=body, headers=headers, timeout=30)
    try:
        assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("application/json"), r.text[:300]
        detail = r.json()["detail"]
        assert detail, r.text[:300]
        assert "Traceback" not in r.text
    finally:
        if path == "/admin/faults":
            httpx.delete(edge_catalog.url + path, headers=login(edge_catalog, "admin"))
