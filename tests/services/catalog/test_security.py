"""Attack the catalog: forged and expired tokens, role escalation, floods, oversized bodies.

Tokens are crafted with PyJWT and the install's real secret (read from the secrets folder),
so each attack differs from a token the service accepts in exactly one way; a control token
built the same way must be accepted, or the test proves nothing.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest
import redis

from perflab import auth
from perflab.loadgen import Endpoint, LoadProfile, run_load

REVIEW = {"rating": 4, "text": "security test", "author": "attacker"}


@pytest.fixture(scope="module")
def secure(start_catalog):
    return start_catalog("t-secure", queries="optimized", cache="none")


def _secret(svc) -> bytes:
    return (auth.secrets_dir(svc) / ".jwt-secret").read_bytes().strip()


def _claims(**over) -> dict:
    now = int(time.time())
    claims = {
        "sub": "editor",
        "role": "editor",
        "iss": "perflab-catalog",
        "aud": "perflab",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _post_review(svc, token: str | None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{svc.url}/products/3/reviews", json=REVIEW, headers=headers)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_login_form_and_json_issue_a_working_token(secure):
    pw = auth.password("editor", secure)
    form = httpx.post(f"{secure.url}/auth/token", data={"username": "editor", "password": pw})
    js = httpx.post(f"{secure.url}/auth/token", json={"username": "editor", "password": pw})
    for r in (form, js):
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["token_type"] == "bearer"
        assert body["role"] == "editor"
        assert 10 <= body["expires_in"] <= 3600, "access tokens are short-lived"
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == body["expires_in"]
        assert jwt.get_unverified_header(body["access_token"])["alg"] == "HS256"
    assert _post_review(secure, js.json()["access_token"]).status_code == 201


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "editor", "password": "wrong password"}, 401),
        ({"username": "nobody", "password": "x"}, 401),
        ({"username": "editor"}, 422),
        ({"username": "editor", "password": "p" * 5000}, 422),
        ({"username": ["editor"], "password": {"$ne": ""}}, 422),
    ],
)
def test_bad_logins(secure, body, status):
    r = httpx.post(f"{secure.url}/auth/token", json=body)
    assert r.status_code == status, r.text
    assert r.json()["detail"]
    assert "access_token" not in r.json()
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert "wrong password" not in r.text and "p" * 100 not in r.text, "never echo a password"


def test_secrets_are_per_install_files_readable_only_by_the_owner(secure):
    folder = auth.secrets_dir(secure)
    for name in (".jwt-secret", ".demo-users.json"):
        path = folder / name
        assert path.exists(), path
        assert path.stat().st_mode & 0o077 == 0, f"{name} must be 0600"
    assert len(_secret(secure)) >= 32
    source = Path(__file__).resolve().parents[3] / "services"
    key = _secret(secure).decode()
    assert not any(key in p.read_text() for p in source.rglob("*.py")), "no key in the code"


def test_crafted_control_token_is_accepted(secure):
    """The attacks below differ from this token in one way each; this one must pass."""
    token = jwt.encode(_claims(), _secret(secure), algorithm="HS256")
    assert _post_review(secure, token).status_code == 201


def _attacks(secret: bytes) -> dict[str, str]:
    valid = jwt.encode(_claims(role="viewer", sub="viewer"), secret, algorithm="HS256")
    head, payload, sig = valid.split(".")
    escalated = {**json.loads(base64.urlsafe_b64decode(payload + "==")), "role": "admin"}
    now = int(time.time())
    return {
        "alg none": jwt.encode(_claims(), None, algorithm="none"),
        "alg none, signature kept": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{sig}",
        "other alg (HS512)": jwt.encode(_claims(), secret, algorithm="HS512"),
        "forged signature": jwt.encode(_claims(), b"not-the-secret" * 3, algorithm="HS256"),
        "tampered role claim": f"{head}.{_b64(escalated)}.{sig}",
        "expired": jwt.encode(_claims(iat=now - 900, nbf=now - 900, exp=now - 60), secret),
        "not yet valid": jwt.encode(_claims(nbf=now + 600), secret),
        "wrong issuer": jwt.encode(_claims(iss="evil"), secret),
        "wrong audience": jwt.encode(_claims(aud="other-service"), secret),
        "no expiry": jwt.encode(_claims(exp=None), secret),
        "unknown role": jwt.encode(_claims(role="superuser"), secret),
        "garbage": "not.a.jwt",
    }


@pytest.mark.parametrize(
    "attack",
    [
        "alg none",
        "alg none, signature kept",
        "other alg (HS512)",
        "forged signature",
        "tampered role claim",
        "expired",
        "not yet valid",
        "wrong issuer",
        "wrong audience",
        "no expiry",
        "unknown role",
        "garbage",
    ],
)
def test_token_attacks_get_401(secure, attack):
    token = _attacks(_secret(secure))[attack]
    for r in (
        _post_review(secure, token),
        httpx.get(f"{secure.url}/admin/faults", headers={"Authorization": f"Bearer {token}"}),
        httpx.get(f"{secure.url}/products/1", headers={"Authorization": f"Bearer {token}"}),
    ):
        assert r.status_code == 401, (attack, r.request.url, r.text)
        assert r.json()["detail"]
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_wrong_auth_scheme_is_401(secure):
    pw = auth.password("editor", secure)
    basic = base64.b64encode(f"editor:{pw}".encode()).decode()
    r = _post_review(secure, None, Authorization=f"Basic {basic}")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_roles(secure, login):
    viewer, editor, admin = (login(secure, u) for u in ("viewer", "editor", "admin"))
    # reads: anonymous or any role
    for headers in ({}, viewer, editor, admin):
        assert httpx.get(f"{secure.url}/products/1", headers=headers).status_code == 200
    # writes: editor and up; anonymous is 401 (who are you?), viewer is 403 (not allowed)
    anon = httpx.post(f"{secure.url}/products/3/reviews", json=REVIEW)
    assert anon.status_code == 401 and anon.headers["www-authenticate"].startswith("Bearer")
    r = httpx.post(f"{secure.url}/products/3/reviews", json=REVIEW, headers=viewer)
    assert r.status_code == 403 and "editor" in r.json()["detail"]
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    for headers in (editor, admin):
        r = httpx.post(f"{secure.url}/products/3/reviews", json=REVIEW, headers=headers)
        assert r.status_code == 201
    # admin endpoints: admin only
    for method in ("GET", "PUT", "DELETE"):
        body = {} if method == "PUT" else None
        url = f"{secure.url}/admin/faults"
        assert httpx.request(method, url, json=body).status_code == 401
        for headers in (viewer, editor):
            assert httpx.request(method, url, json=body, headers=headers).status_code == 403
        assert httpx.request(method, url, json=body, headers=admin).status_code == 200


def test_auth_can_be_switched_off_for_experiments_but_not_for_admin(start_catalog):
    svc = start_catalog("t-noauth", auth_enabled=False)
    assert httpx.post(f"{svc.url}/products/3/reviews", json=REVIEW).status_code == 201
    assert httpx.get(f"{svc.url}/admin/faults").status_code == 401


def test_body_too_large_is_413_json(secure, login):
    url = f"{secure.url}/products/3/reviews"
    headers = {"content-type": "application/json", **login(secure)}
    big = json.dumps({**REVIEW, "text": "x" * 100_000}).encode()
    r = httpx.post(url, content=big, headers=headers)
    assert r.status_code == 413
    assert "too large" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit counts what arrives
        for _ in range(100):
            yield b"x" * 1024

    r = httpx.post(url, content=chunks(), headers=headers)
    assert r.status_code == 413, r.text
    assert "too large" in r.json()["detail"]
    r = httpx.post(f"{secure.url}/auth/token", content=b"a=" + b"b" * 100_000)
    assert r.status_code == 413


def test_logs_never_contain_tokens_or_passwords(secure):
    user_pw = {u: auth.password(u, secure) for u in ("viewer", "editor", "admin")}
    tokens = []
    for user, pw in user_pw.items():
        r = httpx.post(f"{secure.url}/auth/token", data={"username": user, "password": pw})
        tokens.append(r.json()["access_token"])
        httpx.post(f"{secure.url}/auth/token", json={"username": user, "password": pw + "x"})
    for t in tokens:
        httpx.get(f"{secure.url}/products/1", headers={"Authorization": f"Bearer {t}"})
        _post_review(secure, t)
        _post_review(secure, t + "tampered")
    time.sleep(0.3)
    text = secure.log_file.read_text() + secure.output_file.read_text()
    logged = [json.loads(x) for x in secure.log_file.read_text().splitlines() if x.strip()]
    users = {x.get("user") for x in logged}
    assert "editor" in users, "the subject is logged (so we are reading the right log)"
    for secret in [*user_pw.values(), *tokens, *(t.split(".")[2] for t in tokens)]:
        assert secret not in text
    assert _secret(secure).decode() not in text


def _flood(url: str, n: int, headers: dict | None = None) -> list[httpx.Response]:
    with httpx.Client(headers=headers or {}) as client:
        return [client.get(f"{url}/products/1") for _ in range(n)]


def test_rate_limit_exhaustion_then_recovery(start_catalog, login):
    svc = start_catalog(
        "t-ratelimit", rate_limit_enabled=True, rate_limit_per_second=1, rate_limit_burst=6
    )
    viewer = login(svc, "viewer")  # before the flood: logins are rate-limited per IP too
    first = _flood(svc.url, 12)
    codes = [r.status_code for r in first]
    assert codes[:5] == [200] * 5, codes  # the burst of 6, less the login's token
    refused = [r for r in first if r.status_code == 429]
    assert len(refused) >= 3, codes
    r = refused[0]
    assert int(r.headers["retry-after"]) >= 1
    assert "rate limit" in r.json()["detail"]
    assert r.headers["content-type"] == "application/json"
    # ops endpoints stay reachable while a client is limited
    assert httpx.get(f"{svc.url}/healthz").status_code == 200
    # a logged-in user has its own bucket (the token's subject, not the shared IP)
    assert httpx.get(f"{svc.url}/products/1", headers=viewer).status_code == 200
    metrics = httpx.get(f"{svc.url}/metrics").text
    count = next(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("rate_limited_total")
    )
    assert count >= len(refused)
    time.sleep(int(r.headers["retry-after"]) + 0.5)  # refill: 1 token/s
    assert httpx.get(f"{svc.url}/products/1").status_code == 200


def test_rate_limit_is_shared_across_workers_through_redis(
    start_catalog, redis_url, redis_settings
):
    """Two workers, one bucket in Redis: the burst is not doubled by the worker count.

    It holds on a busy machine: Redis gets 10 s per reply (`redis_settings`: a reply slower
    than the service's 0.25 s would send a worker to its own in-process bucket, the fail-open
    path, another test's subject; the log must show none), the refill is slow and counted from
    the time the flood really took, and the flood goes on until both workers have answered some
    of it (their pids in the request log), so the bucket was shared, not just used by one.
    """
    rate, burst = 0.05, 10
    key = "catalog:ratelimit:ip:127.0.0.1"
    redis.Redis.from_url(redis_url).delete(key)
    svc = start_catalog(
        "t-ratelimit-redis",
        workers=2,
        **redis_settings,
        rate_limit_enabled=True,
        rate_limit_per_second=rate,
        rate_limit_burst=burst,
    )
    try:
        codes: dict[str, int] = {}
        pids: set[int] = set()
        t0 = time.monotonic()
        while len(codes) < 3 * burst or len(pids) < 2:
            assert time.monotonic() - t0 < 120, f"one worker took every request: {pids}"
            # one new connection per round of 10, so both workers take some
            with httpx.Client(timeout=60) as client:
                for _ in range(burst):
                    rid = uuid.uuid4().hex
                    r = client.get(f"{svc.url}/products/1", headers={"X-Request-ID": rid})
                    codes[rid] = r.status_code
            pids = {line["pid"] for line in _request_lines(svc, codes)}
        elapsed = time.monotonic() - t0
        allowed = sum(code == 200 for code in codes.values())
        refill = int(rate * elapsed)  # tokens the bucket can have gained meanwhile
        assert set(codes.values()) == {200, 429}
        assert burst <= allowed <= burst + refill + 1, (
            f"{allowed} allowed of {len(codes)} with a shared burst of {burst} "
            f"(+{refill} refilled in {elapsed:.1f} s)"
        )
        assert redis.Redis.from_url(redis_url).exists(key)
        events = {json.loads(x)["event"] for x in svc.log_file.read_text().splitlines()}
        assert "ratelimit_error" not in events, "a worker fell back to its own bucket"
    finally:
        redis.Redis.from_url(redis_url).delete(key)


def _request_lines(svc, request_ids) -> list[dict]:
    """The request log lines (each with its worker's pid) of these request ids, so far."""
    lines = [json.loads(x) for x in svc.log_file.read_text().splitlines() if x.strip()]
    return [x for x in lines if x.get("request_id") in request_ids]


def test_tls_serves_https_and_locust_can_load_it(start_catalog, tmp_path):
    svc = start_catalog("t-tls", tls=True)
    assert svc.url.startswith("https://127.0.0.1:")
    assert svc.ca_file is not None and svc.ca_file.exists()
    r = httpx.get(f"{svc.url}/products/1", verify=svc.verify)
    assert r.status_code == 200
    with pytest.raises(httpx.ConnectError):  # not trusted without the lab's certificate
        httpx.get(f"{svc.url}/healthz")
    key_file = svc.ca_file.with_name("key.pem")
    assert key_file.stat().st_mode & 0o077 == 0
    result = run_load(
        svc.url,
        [Endpoint("GET /products/{id}", "/products/{product}")],
        LoadProfile(users=2, duration=3, warmup=0.5),
        tmp_path,
        label="tls",
        progress=False,
        ca_file=svc.ca_file,
        extra_config={"products": 200, "categories": 5},
    )
    assert len(result.samples) > 20
    assert result.samples["ok"].all(), result.samples["status"].value_counts()


def test_request_id_of_an_anonymous_write_refusal_is_logged(secure):
    rid = f"sec-{uuid.uuid4().hex[:12]}"
    httpx.post(f"{secure.url}/products/3/reviews", json=REVIEW, headers={"X-Request-ID": rid})
    time.sleep(0.3)
    lines = [json.loads(x) for x in secure.log_file.read_text().splitlines()]
    (line,) = [x for x in lines if x.get("request_id") == rid]
    assert line["status"] == 401


def test_every_read_route_refuses_a_bad_token_and_logs_its_route(secure):
    """Reads check the token without a dependency (`ReaderRoute`): still a 401 on each of them,
    logged under the route it was refused on."""
    bad = {"Authorization": "Bearer not-a-token"}
    routes = {
        "/products": "/products",
        "/products/{product_id}": "/products/1",
        "/products/{product_id}/brief": "/products/1/brief",
        "/categories/{category_id}/top": "/categories/1/top",
    }
    for route, path in routes.items():
        rid = f"sec-read-{uuid.uuid4().hex[:12]}"
        r = httpx.get(f"{secure.url}{path}", headers={**bad, "X-Request-ID": rid})
        assert r.status_code == 401, (path, r.text)
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
        assert httpx.get(f"{secure.url}{path}").status_code == 200  # anonymous reads are fine
        deadline = time.monotonic() + 30
        line: dict = {}
        while not line and time.monotonic() < deadline:
            lines = [json.loads(x) for x in secure.log_file.read_text().splitlines()]
            line = next((x for x in lines if x.get("request_id") == rid), {})
            time.sleep(0.05)
        assert line["status"] == 401 and line["route"] == route, line
