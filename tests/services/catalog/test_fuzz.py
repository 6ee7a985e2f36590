"""Property-based fuzzing of every endpoint: whatever arrives, never a 5xx, always a JSON error
body with a `detail`, and never a traceback or SQL in what goes back.

Hypothesis generates path segments, query strings, JSON and raw bodies, content types and
tokens; a real uvicorn service answers. `test_every_endpoint_is_fuzzed` compares the list
below with /openapi.json, so a new endpoint fails the suite until it is fuzzed too.
`PERFLAB_FUZZ_EXAMPLES=1000` runs a longer hunt than the default 60 examples per test.
"""

from __future__ import annotations

import os
import string
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZED = {
    ("GET", "/products"),
    ("GET", "/products/{product_id}"),
    ("GET", "/products/{product_id}/brief"),
    ("POST", "/products/{product_id}/reviews"),
    ("GET", "/categories/{category_id}/top"),
    ("POST", "/auth/token"),
    ("GET", "/admin/faults"),
    ("PUT", "/admin/faults"),
    ("DELETE", "/admin/faults"),
    ("GET", "/healthz"),
    ("GET", "/variant"),
}
LEAKS = ("Traceback", "sqlalchemy", "SELECT ", "INSERT ", "psycopg", "sqlite3", 'File "')

FUZZ = settings(
    max_examples=int(os.environ.get("PERFLAB_FUZZ_EXAMPLES", "60")),  # more: a deeper hunt
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ids = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=20).map(lambda s: quote(s, safe="")),
    st.sampled_from(["1", "0", "-1", "1.5", "1e3", "%00", "..", "null", "2147483648"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
query_values = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.floats(allow_nan=True).map(str),
    st.text(max_size=30),
)
params = st.dictionaries(
    st.sampled_from(
        ["category", "min_price", "max_price", "q", "limit", "offset", "cursor", "junk"]
    ),
    query_values,
    max_size=6,
)
header_text = st.text(alphabet=string.printable.strip() + " ", max_size=100).map(str.strip)
auth_users = st.sampled_from([None, "viewer", "editor", "admin", "garbage"])


@pytest.fixture(scope="module")
def target(start_catalog):
    return start_catalog("t-fuzz", queries="optimized", cache="memory")


@pytest.fixture(scope="module")
def client(target):
    with httpx.Client(base_url=target.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def tokens(target, login):
    out = {u: login(target, u) for u in ("viewer", "editor", "admin")}
    out["garbage"] = {"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."}
    out[None] = {}
    return out


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.request.method, str(r.request.url), r.status_code, r.text)
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json"), r.text
        assert r.json()["detail"], r.text
    for leak in LEAKS:
        assert leak not in r.text, (leak, r.text[:300])


def test_every_endpoint_is_fuzzed(client):
    spec = client.get("/openapi.json").json()
    served = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert served == FUZZED


@FUZZ
@given(params=params, user=auth_users)
def test_fuzz_product_list(client, tokens, params, user):
    check(client.get("/products", params=params, headers=tokens[user]))


@FUZZ
@given(pid=ids, cid=ids, limit=query_values, user=auth_users)
def test_fuzz_product_and_category(client, tokens, pid, cid, limit, user):
    check(client.get(f"/products/{pid}", headers=tokens[user]))
    check(client.get(f"/products/{pid}/brief", headers=tokens[user]))
    check(client.get(f"/categories/{cid}/top", params={"limit": limit}, headers=tokens[user]))


review_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"rating": scalars, "text": scalars, "author": scalars},
        optional={"extra": scalars},
    ),
    st.fixed_dictionaries(
        {
            "rating": st.integers(1, 5),
            "text": st.text(min_size=1, max_size=2000),
            "author": st.text(min_size=1, max_size=80),
        }
    ),
)


@FUZZ
@given(
    pid=st.one_of(ids, st.integers(1, 200).map(str)),
    body=review_bodies,
    user=auth_users,
    key=st.one_of(st.none(), header_text),
)
def test_fuzz_review_post(client, tokens, pid, body, user, key):
    headers = dict(tokens[user])
    if key is not None:
        headers["Idempotency-Key"] = key
    check(client.post(f"/products/{pid}/reviews", json=body, headers=headers))


@FUZZ
@given(
    raw=st.binary(max_size=300),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/json; charset=utf-16",
            "",
        ]
    ),
    path=st.sampled_from(["/auth/token", "/products/1/reviews", "/admin/faults"]),
)
def test_fuzz_raw_bodies(client, tokens, raw, content_type, path):
    headers = {"content-type": content_type} if content_type else {}
    method = "PUT" if path == "/admin/faults" else "POST"
    headers.update(tokens["admin" if method == "PUT" else "editor"])
    check(client.request(method, path, content=raw, headers=headers))
    if method == "PUT":
        client.delete("/admin/faults", headers=tokens["admin"])


@FUZZ
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries({}, optional={"username": scalars, "password": scalars}),
    ),
    form=st.booleans(),
)
def test_fuzz_login(client, body, form):
    if form and isinstance(body, dict):
        data = {str(k): str(v) for k, v in body.items()}
        r = client.post("/auth/token", data=data)
    else:
        r = client.post("/auth/token", json=body)
    check(r)
    assert r.status_code in (401, 413, 415, 422), r.text


@FUZZ
@given(
    body=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {},
            optional={
                "latency_ms": scalars,
                "error_rate": scalars,
                "error_status": scalars,
                "error_phase": scalars,
                "cache_outage": scalars,
                "db_sleep_ms": scalars,
                "cpu_burn_ms": scalars,
            },
        ),
    ),
    user=auth_users,
)
def test_fuzz_admin_faults(client, tokens, body, user):
    r = client.put("/admin/faults", json=body, headers=tokens[user])
    try:
        check(r)
        if user != "admin":
            assert r.status_code in (401, 403)
    finally:
        client.delete("/admin/faults", headers=tokens["admin"])
    check(client.get("/admin/faults", headers=tokens[user]))
    check(client.get("/healthz"))
    check(client.get("/variant"))
