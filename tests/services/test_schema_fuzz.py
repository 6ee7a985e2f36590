"""Hypothesis over the OpenAPI schema, on both services: 0 server errors, whatever arrives.

Every operation in the catalog's `/openapi.json` (and the gateway's, which proxies the same
API: where the gateway documents less, the catalog's description of the same path is used) is
called with path, query and header parameters and JSON bodies drawn from the schema, mixed
with the inputs that used to answer 500 (issue 17): `NaN`, `Infinity`, `-Infinity` and
`1e400` wherever a value goes, strings holding lone surrogates (sent as `\\ud800` escapes),
and values nested a thousand levels deep. The answer must be below 500 and, if it is an
error, JSON with a `detail`. `PERFLAB_FUZZ_EXAMPLES` raises the number of examples.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FUZZ = settings(
    max_examples=int(os.environ.get("PERFLAB_FUZZ_EXAMPLES", "60")) * 3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Raw:
    """A JSON value written as-is (`NaN`, `1e400`, `[[[...]]]`): json.dumps cannot write them."""

    def __init__(self, text: str) -> None:
        self.text = text


NON_FINITE = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]).map(Raw)
DEEP = st.integers(900, 3000).flatmap(
    lambda n: st.sampled_from([Raw("[" * n + "]" * n), Raw('{"a":' * n + "1" + "}" * n)])
)
SURROGATES = st.sampled_from(["\ud800", "\udfff", "\udc00\ud800"])
NASTY_TEXT = st.one_of(
    st.text(max_size=30),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), SURROGATES, st.text(max_size=5)),
)
NASTY = st.one_of(
    NON_FINITE,
    DEEP,
    NASTY_TEXT,
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)


def dumps(value: Any) -> bytes:
    """JSON with `Raw` values spliced in; lone surrogates as `\\uXXXX` escapes."""
    raws: list[str] = []

    def mark(obj: Any) -> str:
        if isinstance(obj, Raw):
            raws.append(obj.text)
            return f"\x00RAW{len(raws) - 1}\x00"
        raise TypeError(type(obj))

    text = json.dumps(value, default=mark)
    text = re.sub(r'"\\u0000RAW(\d+)\\u0000"', lambda m: raws[int(m[1])], text)
    return text.encode("ascii")


def schema_ref_parts(ref: str) -> list[str]:
    return ref.lstrip("#/").split("/")


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        node: Any = spec
        for part in schema_ref_parts(schema["$ref"]):
            node = node[part]
        schema = node
    return schema


def from_schema(spec: dict, schema: dict, depth: int = 0) -> st.SearchStrategy:
    """Values the schema allows, and values it does not (NASTY), mixed."""
    schema = resolve(spec, schema)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return st.one_of(*[from_schema(spec, s, depth) for s in options])
    kind = schema.get("type")
    fitting: st.SearchStrategy
    if kind == "integer":
        fitting = st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    elif kind == "number":
        fitting = st.floats(allow_nan=False, allow_infinity=False)
    elif kind == "string":
        enum = schema.get("enum")
        fitting = st.sampled_from(enum) if enum else st.text(max_size=schema.get("maxLength", 40))
    elif kind == "boolean":
        fitting = st.booleans()
    elif kind == "object" and "properties" in schema and depth < 3:
        props = {k: from_schema(spec, v, depth + 1) for k, v in schema["properties"].items()}
        required = set(schema.get("required", ()))
        fitting = st.fixed_dictionaries(
            {k: v for k, v in props.items() if k in required},
            optional={k: v for k, v in props.items() if k not in required},
        )
    else:
        fitting = NASTY
    return st.one_of(fitting, NASTY)


def as_param(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text[:200]
    return value if isinstance(value, str) else json.dumps(value)


def operations(spec: dict, described_by: dict) -> list[tuple[str, str, dict]]:
    """(method, path, operation) for every operation; parameters and body from `described_by`
    where it describes the same path and method more fully."""
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            fuller = described_by["paths"].get(path, {}).get(method, {})
            merged = dict(op)
            if len(fuller.get("parameters", [])) > len(op.get("parameters", [])):
                merged["parameters"] = fuller["parameters"]
            if "requestBody" in fuller and "requestBody" not in op:
                merged["requestBody"] = fuller["requestBody"]
            out.append((method.upper(), path, merged))
    return out


def encoded(value: Any) -> str:
    """A value for a URL: percent-encoded UTF-8, lone surrogates included (as %ED%A0%80)."""
    return quote(as_param(value).encode("utf-8", "surrogatepass"), safe="")


@st.composite
def requests(draw, spec: dict, ops: list[tuple[str, str, dict]]) -> dict:
    method, path, op = draw(st.sampled_from(ops))
    query: list[str] = []
    headers: dict[str, str] = {}
    for param in op.get("parameters", []):
        value = draw(from_schema(spec, param.get("schema", {})))
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", encoded(value) or "x")
        elif param["in"] == "query" and draw(st.booleans()):
            query.append(f"{param['name']}={encoded(value)}")
        elif param["in"] == "header" and draw(st.booleans()):
            text = as_param(value).encode("ascii", "ignore").decode()
            headers[param["name"]] = "".join(c for c in text if c.isprintable()).strip()[:200]
    body: bytes | None = None
    if method in ("POST", "PUT"):
        content = op.get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema", {})
        body = dumps(draw(from_schema(spec, schema)))
        headers["content-type"] = "application/json"
    user = draw(st.sampled_from([None, "viewer", "editor", "admin"]))
    return {
        "method": method,
        "url": path + ("?" + "&".join(query) if query else ""),
        "headers": headers,
        "content": body,
        "user": user,
    }


@pytest.fixture(scope="module")
def catalog_spec(edge_catalog) -> dict:
    return httpx.get(f"{edge_catalog.url}/openapi.json").json()


def check(r: httpx.Response) -> None:
    assert r.status_code < 500, (r.request.method, str(r.request.url), r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json"), r.text[:300]
        assert r.json()["detail"], r.text[:300]
    assert "Traceback" not in r.text


@pytest.mark.parametrize("service", ["edge_catalog", "edge_gateway"])
def test_no_server_error_for_anything_the_schema_describes(
    request, edge_catalog, catalog_spec, login, service
):
    svc = request.getfixturevalue(service)
    spec = httpx.get(f"{svc.url}/openapi.json").json()
    ops = operations(spec, catalog_spec)
    assert ops, "the schema lists no operation"
    tokens = {None: {}, **{u: login(edge_catalog, u) for u in ("viewer", "editor", "admin")}}

    with httpx.Client(base_url=svc.url, timeout=60) as client:

        @FUZZ
        @given(call=requests(catalog_spec, ops))
        def fuzz(call: dict) -> None:
            headers = {**call["headers"], **tokens[call["user"]]}
            r = client.request(
                call["method"], call["url"], content=call["content"], headers=headers
            )
            try:
                check(r)
            finally:
                if call["url"].startswith("/admin/faults") and call["method"] == "PUT":
                    client.delete("/admin/faults", headers=tokens["admin"])

        fuzz()
