"""Fault injection and resilience: each fault does what it says, shows in metrics and logs, and
the service survives Redis dying under load and retried writes without losing or doubling any.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from perflab import auth, faults
from perflab.loadgen import Endpoint, LoadProfile, run_load
from perflab.redis_server import EmbeddedRedis
from perflab_services.catalog.core.db import make_engine
from perflab_services.catalog.core.faults import Faults, FaultSpec, UnsafeFolder, private_folder
from perflab_services.catalog.models import Review


@pytest.fixture(scope="module")
def faulty(start_catalog):
    svc = start_catalog("t-faults", queries="optimized", cache="memory")
    yield svc
    faults.clear(svc)


def _gauges(svc) -> dict[str, float]:
    text = httpx.get(f"{svc.url}/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("fault_active{"):
            name = line.split('fault="')[1].split('"')[0]
            out[name] = float(line.split()[-1])
    return out


def _log_line(svc, request_id: str) -> dict:
    deadline = time.monotonic() + 30  # at once, unless the machine is busy
    while time.monotonic() < deadline:
        for raw in svc.log_file.read_text().splitlines():
            line = json.loads(raw)
            if line.get("request_id") == request_id:
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line for {request_id}")


def _timed_get(svc, path: str) -> tuple[httpx.Response, float]:
    t0 = time.perf_counter()
    r = httpx.get(f"{svc.url}{path}", headers={"X-Request-ID": uuid.uuid4().hex}, timeout=30)
    return r, time.perf_counter() - t0


def test_latency_fault_is_visible_in_latency_metrics_and_logs(faulty):
    assert faults.get(faulty)["active"] == []
    assert set(_gauges(faulty).values()) == {0.0}
    state = faults.set(faulty, latency_ms=300, jitter_ms=50)
    assert state["active"] == ["latency"]
    assert _gauges(faulty)["latency"] == 1.0
    r, slow = _timed_get(faulty, "/products/1")
    assert r.status_code == 200
    assert slow >= 0.3
    line = _log_line(faulty, r.headers["x-request-id"])
    assert line["fault"] == "latency"
    assert line["duration_ms"] >= 300
    # admin and ops endpoints are never slowed, so the lab can always switch faults off
    _, admin_time = _timed_get(faulty, "/healthz")
    assert admin_time < 0.3
    faults.clear(faulty)
    assert _gauges(faulty)["latency"] == 0.0
    r, fast = _timed_get(faulty, "/products/1")
    assert "fault" not in _log_line(faulty, r.headers["x-request-id"])
    assert fast < slow / 2


@pytest.mark.parametrize("status", [500, 503])
def test_error_fault_answers_injected_json_errors(faulty, status):
    with faults.injected(faulty, error_rate=1.0, error_status=status):
        assert _gauges(faulty)["errors"] == 1.0
        r, _ = _timed_get(faulty, "/products/2")
        assert r.status_code == status
        assert r.json() == {"detail": f"injected fault: deliberate {status}", "injected": True}
        line = _log_line(faulty, r.headers["x-request-id"])
        assert line["injected"] is True and line["fault"] == "errors"
        assert httpx.get(f"{faulty.url}/healthz").status_code == 200
    assert _timed_get(faulty, "/products/2")[0].status_code == 200


def test_error_rate_is_a_fraction(faulty):
    with faults.injected(faulty, error_rate=0.5):
        codes = [httpx.get(f"{faulty.url}/products/3").status_code for _ in range(80)]
    failed = codes.count(503)
    assert set(codes) <= {200, 503}
    assert 15 <= failed <= 65, failed  # binomial(80, 0.5): far outside 6 sigma otherwise


def test_cache_outage_fault_bypasses_the_cache(faulty):
    httpx.get(f"{faulty.url}/products/4")
    assert httpx.get(f"{faulty.url}/products/4").headers["x-cache"] == "hit"
    with faults.injected(faulty, cache_outage=True):
        assert _gauges(faulty)["cache_outage"] == 1.0
        r, _ = _timed_get(faulty, "/products/4")
        assert r.status_code == 200
        assert r.headers["x-cache"] == "bypass"
        assert int(r.headers["x-db-queries"]) >= 1
        line = _log_line(faulty, r.headers["x-request-id"])
        assert line["fault"] == "cache_outage" and line["cache_error"] == "InjectedOutage"
        metrics = httpx.get(f"{faulty.url}/metrics").text
        assert 'cache_requests_total{cache="memory",result="error"}' in metrics
    assert httpx.get(f"{faulty.url}/products/4").headers["x-cache"] == "hit"


def test_slow_database_fault_delays_each_query(faulty):
    with faults.injected(faulty, db_sleep_ms=100):
        r, seconds = _timed_get(faulty, "/products?limit=5")
    queries = int(r.headers["x-db-queries"])
    assert queries >= 2
    assert seconds >= 0.1 * queries
    db_ms = float(r.headers["server-timing"].split("db;dur=")[1].split(",")[0])
    assert db_ms >= 100 * queries * 0.9


def test_cpu_burn_fault_costs_cpu(faulty):
    def cpu_seconds() -> float:
        text = httpx.get(f"{faulty.url}/metrics").text
        line = next(x for x in text.splitlines() if x.startswith("process_cpu_seconds_total"))
        return float(line.split()[-1])

    before = cpu_seconds()
    with faults.injected(faulty, cpu_burn_ms=150):
        for _ in range(4):
            r, seconds = _timed_get(faulty, "/products/5")
            assert r.status_code == 200 and seconds >= 0.15
    assert cpu_seconds() - before >= 0.5  # 4 x 150 ms of busy CPU in the service


def _every_worker_reports(svc, admin: dict, active: list[str], workers: int = 2) -> None:
    """Ask `GET /admin/faults` over new connections until each of the `workers` has answered
    with `active` as its current faults (each looks at the shared state file at most every
    0.25 s; on a busy machine that, and which worker takes a connection, can take a while)."""
    seen: dict[int, list[str]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = httpx.get(f"{svc.url}/admin/faults", headers=admin, timeout=30).json()
        seen[state["worker_pid"]] = state["active"]
        if len(seen) == workers and all(now == active for now in seen.values()):
            return
        time.sleep(0.02)
    raise AssertionError(f"not every worker reported {active} within 60 s: {seen}")


def test_faults_reach_every_worker(start_catalog, login):
    """One PUT lands in one worker; the state file carries it to the other, and a DELETE too."""
    svc = start_catalog("t-faults-workers", workers=2)
    admin = login(svc, "admin")
    faults.set(svc, latency_ms=300)
    try:
        _every_worker_reports(svc, admin, ["latency"])
        answers = [_timed_get(svc, "/products/1") for _ in range(6)]
        times = [seconds for _, seconds in answers]
        assert min(times) >= 0.3, times  # a lower bound: a busy machine only adds to it
        for r, _ in answers:
            assert _log_line(svc, r.headers["x-request-id"])["fault"] == "latency"
    finally:
        faults.clear(svc)
    _every_worker_reports(svc, admin, [])
    for _ in range(6):
        r, _ = _timed_get(svc, "/products/1")
        assert r.status_code == 200
        assert "fault" not in _log_line(svc, r.headers["x-request-id"])


def test_fault_spec_is_validated(faulty, login):
    admin = login(faulty, "admin")
    for bad in ({"error_rate": 2}, {"latency_ms": -1}, {"error_status": 418}, {"nope": 1}):
        r = httpx.put(f"{faulty.url}/admin/faults", json=bad, headers=admin)
        assert r.status_code == 422, bad
    assert faults.get(faulty)["active"] == []


def test_redis_stopped_during_load_reads_keep_answering(start_catalog, tmp_path):
    """~12 s of load; Redis dies at 3 s and comes back at 7 s: zero failed requests."""
    redis = EmbeddedRedis(log_dir=tmp_path).start()
    try:
        # The rate limiter keeps its buckets in the same Redis (limits too high to matter):
        # it must fall back to in-process buckets, not fail requests, while Redis is gone.
        svc = start_catalog(
            "t-redis-chaos",
            cache="redis",
            redis_url=redis.url,
            rate_limit_enabled=True,
            rate_limit_per_second=1_000_000,
            rate_limit_burst=1_000_000,
        )
        t0 = time.monotonic()
        events: dict[str, float] = {}

        def chaos() -> None:
            elapsed = time.monotonic() - t0
            if elapsed > 3 and "stopped" not in events:
                redis.proc.stop(timeout=2)
                events["stopped"] = time.time()
            elif elapsed > 7 and "restarted" not in events:
                redis.restart()
                events["restarted"] = time.time()

        result = run_load(
            svc.url,
            [Endpoint("GET /products/{id}", "/products/{product}")],
            LoadProfile(users=4, duration=12, warmup=0),
            tmp_path,
            label="redis-chaos",
            progress=False,
            on_tick=chaos,
            extra_config={"products": 200, "categories": 5},
        )
    finally:
        redis.stop()
    s = result.samples
    assert {"stopped", "restarted"} <= set(events)
    assert len(s) > 100
    assert s["ok"].all(), s["status"].value_counts().to_dict()
    during = s[(s["t_start"] > events["stopped"] + 0.5) & (s["t_start"] < events["restarted"])]
    after = s[s["t_start"] > events["restarted"] + 2.5]
    assert (during["x_cache"] == "bypass").mean() > 0.8, during["x_cache"].value_counts()
    assert (after["x_cache"] == "hit").any(), "the cache came back by itself"
    metrics = httpx.get(f"{svc.url}/metrics").text
    assert 'cache_requests_total{cache="redis",result="error"}' in metrics
    assert "rate_limited_total 0.0" in metrics
    events_logged = {json.loads(x)["event"] for x in svc.log_file.read_text().splitlines()}
    assert {"cache_error", "ratelimit_error"} <= events_logged


async def _post_with_retries(url: str, headers: dict, tag: str, n: int) -> list[int]:
    """n concurrent reviews, each with its own key, retried until acknowledged; every 5th is
    also sent twice on purpose (a client that retried too eagerly)."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=60, headers=headers, limits=limits) as client:

        async def one(i: int) -> int:
            key = f"{tag}-{i}"
            body = {"rating": 1 + i % 5, "text": f"no lost writes {tag} {i}", "author": "chaos"}
            sends = 2 if i % 5 == 0 else 1
            status = 0
            for _attempt in range(30):
                try:
                    r = await client.post(
                        f"{url}/products/{1 + i % 20}/reviews",
                        json=body,
                        headers={"Idempotency-Key": key},
                    )
                    status = r.status_code
                except httpx.TransportError:
                    status = 0
                if status in (200, 201):
                    sends -= 1
                    if sends == 0:
                        return status
                else:
                    await asyncio.sleep(0.05)
            return status

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_200_concurrent_writes_with_retries_store_exactly_200(start_catalog, database_url):
    """A third of the answers are lost *after* the commit (injected 503): clients retry with the
    same Idempotency-Key, some twice on purpose. The database must hold each review once."""
    svc = start_catalog("t-no-lost-writes", cache="memory")
    tag = uuid.uuid4().hex[:12]
    faults.set(svc, error_rate=0.33, error_phase="after")
    try:
        statuses = asyncio.run(_post_with_retries(svc.url, auth.headers(svc, "editor"), tag, 200))
    finally:
        faults.clear(svc)
    assert all(s in (200, 201) for s in statuses), sorted(set(statuses))
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            # Stored keys are scoped to the caller (hashed): find this run's rows by their text.
            mine = Review.text.like(f"no lost writes {tag} %")
            stored = conn.scalar(select(func.count(Review.id)).where(mine))
            distinct = conn.scalar(
                select(func.count(func.distinct(Review.idempotency_key))).where(mine)
            )
    finally:
        engine.dispose()
    assert stored == distinct == 200
    log = [json.loads(x) for x in svc.log_file.read_text().splitlines()]
    injected = [x for x in log if x.get("injected") and x.get("route", "").endswith("/reviews")]
    assert len(injected) >= 20, "the fault really lost answers, so retries were exercised"


def test_fault_state_folder_must_be_private(tmp_path):
    """Another local user must not own, open up or redirect the folder of the shared state."""
    made = private_folder(tmp_path / "run")
    assert made.stat().st_mode & 0o777 == 0o700
    open_folder = tmp_path / "open"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    with pytest.raises(UnsafeFolder, match="open to other users"):
        private_folder(open_folder)
    link = tmp_path / "link"
    link.symlink_to(made)
    with pytest.raises(UnsafeFolder, match="not a folder"):
        private_folder(link)


def test_fault_state_is_written_without_following_planted_links(tmp_path):
    folder = private_folder(tmp_path / "run")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    state = folder / "catalog-1.json"
    (folder / f".{state.name}.{os.getpid()}.tmp").symlink_to(victim)  # the temp file's name
    Faults(state_file=state).set(FaultSpec(latency_ms=5))
    assert victim.read_text() == "precious"
    assert (
        not state.is_symlink() and FaultSpec.model_validate_json(state.read_text()).latency_ms == 5
    )
    assert state.stat().st_mode & 0o777 == 0o600


def test_workers_share_faults_through_a_private_folder(start_catalog):
    svc = start_catalog("t-faults-private", workers=2)
    faults.set(svc, latency_ms=1)
    try:
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        base = Path(runtime) / "perflab" if runtime and Path(runtime).is_dir() else None
        base = base or auth.secrets_dir(svc) / "run"
        files = list(base.glob("catalog-*.json"))
        assert files, f"no shared fault state in {base}"
        assert base.stat().st_uid == os.getuid() and base.stat().st_mode & 0o777 == 0o700
        assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    finally:
        faults.clear(svc)
