"""Limits that could be walked around (issue 17), each attack as a test.

- a made-up `X-Forwarded-For` per request no longer buys a fresh rate-limit bucket; trusting a
  proxy is an explicit setting, and the gateway names each caller to the catalog;
- the gateway passes a 429's `Retry-After` on;
- logins are throttled per client and per username before any password is hashed;
- request heads are bounded in size and in time (oversized header, slowloris);
- the gateway counts a streamed body against its limit as it arrives;
- a stalled (SIGSTOPped) catalog costs a gateway caller at most the call budget and opens the
  breaker.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest


def _statuses(url: str, n: int, headers_for=lambda i: {}) -> list[httpx.Response]:
    with httpx.Client(timeout=30) as client:
        return [client.get(f"{url}/products/1", headers=headers_for(i)) for i in range(n)]


def _spoofed(i: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"203.0.113.{i % 250 + 1}"}


def test_forwarded_for_is_not_trusted_by_default(start_catalog):
    svc = start_catalog(
        "t-xff-default", rate_limit_enabled=True, rate_limit_per_second=0.5, rate_limit_burst=5
    )
    codes = [r.status_code for r in _statuses(svc.url, 20, _spoofed)]
    assert codes.count(429) >= 10, f"one made-up address per request walked around: {codes}"


def test_a_trusted_proxy_may_name_the_client(start_catalog):
    svc = start_catalog(
        "t-xff-trusted",
        rate_limit_enabled=True,
        rate_limit_per_second=0.5,
        rate_limit_burst=5,
        trusted_proxies="127.0.0.1",
    )
    codes = [r.status_code for r in _statuses(svc.url, 20, _spoofed)]
    assert codes == [200] * 20, codes  # each named client has its own bucket


def test_gateway_names_each_caller_and_passes_retry_after_on(start_catalog, start_gateway):
    catalog = start_catalog(
        "t-gw-clients",
        rate_limit_enabled=True,
        rate_limit_per_second=0.2,
        rate_limit_burst=3,
        trusted_proxies="127.0.0.1",
    )
    # The test's callers name themselves to the gateway, as clients behind a trusted proxy do.
    gw = start_gateway("t-gw-clients-gw", catalog.url, trusted_proxies="127.0.0.1")
    first = _statuses(gw.url, 6, lambda i: {"X-Forwarded-For": "198.51.100.1"})
    refused = [r for r in first if r.status_code == 429]
    assert refused, [r.status_code for r in first]
    assert int(refused[0].headers["retry-after"]) >= 1, refused[0].headers
    assert "rate limit" in refused[0].json()["detail"]
    other = _statuses(gw.url, 2, lambda i: {"X-Forwarded-For": "198.51.100.2"})
    assert [r.status_code for r in other] == [200, 200], "another caller has its own bucket"


@pytest.fixture(scope="module")
def login_limited(start_catalog):
    # The general limit out of the way; logins: bursts of 3, one more per 20 s.
    return start_catalog(
        "t-login-throttle",
        rate_limit_enabled=True,
        rate_limit_per_second=100,
        rate_limit_burst=1000,
        login_rate_per_second=0.05,
        login_burst=3,
        trusted_proxies="127.0.0.1",  # so the test can be several clients
    )


def _login(svc, username: str, client: str) -> httpx.Response:
    return httpx.post(
        f"{svc.url}/auth/token",
        json={"username": username, "password": "wrong"},
        headers={"X-Forwarded-For": client},
        timeout=30,
    )


def test_logins_are_throttled_per_client(login_limited):
    codes = [_login(login_limited, uuid.uuid4().hex, "192.0.2.10").status_code for _ in range(5)]
    assert codes[:3] == [401] * 3 and codes[3:] == [429, 429], codes
    r = _login(login_limited, uuid.uuid4().hex, "192.0.2.10")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "too many login attempts" in r.json()["detail"]
    assert _login(login_limited, uuid.uuid4().hex, "192.0.2.11").status_code == 401


def test_logins_are_throttled_per_username(login_limited):
    user = f"victim-{uuid.uuid4().hex[:8]}"
    codes = [_login(login_limited, user, f"192.0.2.{20 + i}").status_code for i in range(5)]
    assert codes[:3] == [401] * 3 and codes[3:] == [429, 429], codes
    assert _login(login_limited, "someone-else", "192.0.2.40").status_code == 401


@pytest.fixture(scope="module")
def plain(start_catalog):
    return start_catalog("t-heads", queries="optimized", cache="none")


def _read_all(sock: socket.socket, timeout: float = 60) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


@pytest.mark.parametrize("service", ["catalog", "gateway"])
def test_oversized_request_head_is_a_431_and_the_connection_closes(plain, start_gateway, service):
    svc = plain if service == "catalog" else start_gateway("t-heads-gw", plain.url)
    with socket.create_connection(("127.0.0.1", svc.port), timeout=60) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:  # an unfinished header: the server must answer before it ends
            for _ in range(64):
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"header fields too large" in answer


def test_connections_that_never_finish_a_request_head_are_closed(plain):
    quiet = [socket.create_connection(("127.0.0.1", plain.port)) for _ in range(5)]
    slow = [socket.create_connection(("127.0.0.1", plain.port)) for _ in range(5)]
    for sock in slow:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    open_socks = set(quiet + slow)
    deadline = time.monotonic() + 60
    try:
        while open_socks and time.monotonic() < deadline:
            for sock in slow:  # slowloris: one more header byte now and then
                if sock in open_socks:
                    with contextlib.suppress(OSError):
                        sock.send(b"X")
            readable, _, _ = select.select(list(open_socks), [], [], 0.5)
            for sock in readable:
                try:
                    if sock.recv(1024) == b"":
                        open_socks.discard(sock)
                except ConnectionResetError:
                    open_socks.discard(sock)
        assert not open_socks, f"{len(open_socks)} of 10 idle or slow connections still open"
    finally:
        for sock in quiet + slow:
            sock.close()
    assert httpx.get(f"{plain.url}/healthz").status_code == 200


def test_gateway_refuses_a_streamed_body_while_it_arrives(plain, start_gateway):
    gw = start_gateway("t-stream-gw", plain.url)
    chunk = b"x" * 65536
    total = 50 * 1024 * 1024
    sent = 0
    with socket.create_connection(("127.0.0.1", gw.port), timeout=60) as sock:
        sock.sendall(
            b"POST /products/1/reviews HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        try:
            while sent < total:
                if select.select([sock], [], [], 0)[0]:
                    break  # the gateway has answered
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"request body too large" in answer
    assert sent < total, "the gateway read the whole 50 MB body before refusing it"


def _request_line(log_lines, path, request_id: str, timeout: float = 30.0) -> list[dict]:
    """The one canonical `request` line of a request id, waiting for it to be written."""
    deadline = time.monotonic() + timeout
    while True:
        found = [x for x in log_lines(path, request_id) if x.get("event") == "request"]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_a_stalled_catalog_costs_at_most_the_budget_and_opens_the_breaker(
    start_catalog, start_gateway, log_lines
):
    catalog = start_catalog("t-stall", queries="optimized", cache="none")
    gw = start_gateway("t-stall-gw", catalog.url, breaker_cooldown_seconds=30)
    assert httpx.get(f"{gw.url}/products/1").status_code == 200
    budget = 5.0  # the gateway's default budget_seconds
    pid = catalog.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda i: httpx.get(f"{gw.url}/products/{i + 1}", timeout=120), range(8))
            )
        assert {r.status_code for r in answers} <= {503, 504}, [r.status_code for r in answers]
        for r in answers:
            # The request's own line (the breaker's lines carry its request id too).
            (line,) = _request_line(log_lines, gw.log_file, r.headers["x-request-id"])
            # A bound, not a speed target: without a budget each waited 3 x 10 s.
            assert line["upstream_ms"] < (budget + 5) * 1000, line
        assert httpx.get(f"{gw.url}/healthz").json()["circuit"] == "open"
        fast = httpx.get(f"{gw.url}/products/9", timeout=120)
        assert fast.status_code == 503 and "circuit open" in fast.json()["detail"]
    finally:
        os.kill(pid, signal.SIGCONT)
