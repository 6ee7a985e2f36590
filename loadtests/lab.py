"""The lab's locustfile: a configurable traffic mix under a closed or an open load model.

Configured by `PERFLAB_LOAD` (JSON) from `perflab.loadgen`; run it yourself with e.g.
`PERFLAB_LOAD='{"mix": [{"path": "/healthz"}], "samples": "s.csv"}' locust -f loadtests/lab.py`.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import json
import os
import random
import socket
import time
from urllib.parse import urlsplit

import gevent
from locust import FastHttpUser, between, constant, events, task
from locust.exception import StopUser

from perflab.recorder import Recorder, Schedule, new_request_id
from perflab_services.common.watchdog import start_parent_watchdog

CONFIG: dict = json.loads(os.environ.get("PERFLAB_LOAD", "{}"))
MIX: list[dict] = CONFIG.get("mix") or [{"name": "GET /", "path": "/"}]
MODEL: str = CONFIG.get("model", "closed")
WORKERS = max(1, int(CONFIG.get("workers", 1)))
_rng = random.Random(CONFIG.get("seed"))
_recorder: Recorder | None = None
_schedule: Schedule | None = None
_stopping = False


def _zipf_cumulative(n: int, s: float) -> list[float]:
    return list(itertools.accumulate(1.0 / k**s for k in range(1, n + 1)))


_PRODUCTS = int(CONFIG.get("products", 1000))
_CATEGORIES = int(CONFIG.get("categories", 10))
_ZIPF = _zipf_cumulative(_PRODUCTS, float(CONFIG.get("zipf_s", 1.0)))
_WEIGHTS = list(itertools.accumulate(float(m.get("weight", 1)) for m in MIX))


def _product() -> int:
    """A product id with Zipf-like popularity: id 1 is the hottest key."""
    return bisect.bisect_left(_ZIPF, _rng.random() * _ZIPF[-1]) + 1


def _fill(template: str) -> str:
    if "{" not in template:
        return template
    return template.format_map(
        {
            "product": _product(),
            "category": _rng.randint(1, _CATEGORIES),
            "offset": _rng.randrange(0, 10) * 20,
            "rand": _rng.randrange(1_000_000),
        }
    )


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    global _recorder, _schedule
    from locust.runners import MasterRunner

    if isinstance(environment.runner, MasterRunner):
        return
    samples = CONFIG.get("samples")
    if samples:
        worker = f"{os.getpid()}"
        path = samples if WORKERS == 1 else f"{samples}.{worker}"
        _recorder = Recorder(path, worker)

        def flusher() -> None:
            while True:
                gevent.sleep(0.5)
                _recorder.flush()

        gevent.spawn(flusher)
    start_parent_watchdog()  # a greenlet here (gevent patches threads): exit with the lab


def _open_schedule(environment) -> Schedule:
    """Each of N workers takes rate/N. Made at the first request, when a worker knows its index:
    constant arrivals are staggered by index/rate (so merged they are evenly spaced, not in
    bursts of N), Poisson streams get distinct seeds (so they are independent)."""
    rate = float(CONFIG["rate"])
    index = int(getattr(environment.runner, "worker_index", 0) or 0) if WORKERS > 1 else 0
    seed = CONFIG.get("seed")
    return Schedule(
        rate / WORKERS,
        CONFIG.get("arrival") == "poisson",
        None if seed is None else int(seed) * 1000 + index,
        offset=index / rate if WORKERS > 1 else None,
    )


@events.test_stopping.add_listener
def _on_stopping(**_kw) -> None:
    """Open model: users claim arrival slots ahead of time (80 users at 50/s hold the next 1.6 s
    of slots); once the run time is up, a user waking for a slot must not send it."""
    global _stopping
    _stopping = True


@events.quitting.add_listener
def _on_quit(environment, **_kw) -> None:
    if _recorder is not None:
        _recorder.close()


def _loopback(url: str | None) -> bool:
    host = urlsplit(url or "").hostname
    try:
        addrs = {str(ai[4][0]) for ai in socket.getaddrinfo(host, None)} if host else set()
    except socket.gaierror:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs)


class LabUser(FastHttpUser):
    """One simulated client. In the open model, users only supply concurrency: *when* each
    request starts is set by the shared schedule, not by how fast the last one came back."""

    if MODEL == "open":
        wait_time = constant(0)
    else:
        wait_time = (
            between(*CONFIG.get("think_time", [0, 0])) if CONFIG.get("think_time") else constant(0)
        )
    if CONFIG.get("ca_file"):  # https with the lab's certificate: verify it
        insecure = False
        ssl_context_factory = staticmethod(
            lambda *_a, **_k: gevent.ssl.create_default_context(cafile=CONFIG["ca_file"])
        )
    network_timeout = float(CONFIG.get("timeout", 30))
    connection_timeout = float(CONFIG.get("timeout", 30))
    max_retries = 0

    def on_start(self) -> None:
        """The web UI lets anyone type a host: keep it to this machine, as `perflab load` does."""
        if CONFIG.get("loopback_only") and not _loopback(self.host):
            self.environment.events.request.fire(
                request_type="REFUSED",
                name=str(self.host),
                response_time=0,
                response_length=0,
                response=None,
                context={},
                exception=RuntimeError(
                    f"{self.host} is not a loopback address: perflab loads only this machine"
                ),
            )
            raise StopUser

    @task
    def one_request(self) -> None:
        global _schedule
        entry = MIX[bisect.bisect_left(_WEIGHTS, _rng.random() * _WEIGHTS[-1])]
        if MODEL == "open" and _schedule is None:
            _schedule = _open_schedule(self.environment)
            if WORKERS > 1:  # distinct (still reproducible) traffic per worker
                index = int(getattr(self.environment.runner, "worker_index", 0) or 0)
                _rng.seed(f"{CONFIG.get('seed')}-{index}")
        if _schedule is not None:
            intended = _schedule.next()
            delay = intended - time.perf_counter()
            if delay > 0:
                gevent.sleep(delay)
            if _stopping:
                return
        else:
            intended = None
        method = entry.get("method", "GET")
        path = _fill(entry["path"])
        rid = new_request_id()
        headers = {"X-Request-ID": rid, **entry.get("headers", {})}
        start_wall = time.time()
        start_pc = time.perf_counter()
        with self.client.request(
            method,
            path,
            headers=headers,
            json=entry.get("json"),
            name=entry.get("name", f"{method} {entry['path']}"),
            catch_response=True,
        ) as resp:
            end_pc = time.perf_counter()
            status = resp.status_code or 0
            ok = 200 <= status < 400
            if ok:
                resp.success()
            else:
                resp.failure(f"HTTP {status}")
            if _recorder is not None:
                h = resp.headers or {}
                _recorder.record(
                    intended_pc=intended if intended is not None else start_pc,
                    start_pc=start_pc,
                    end_pc=end_pc,
                    start_wall=start_wall,
                    status=status,
                    ok=ok,
                    endpoint=entry.get("name", f"{method} {entry['path']}"),
                    x_cache=h.get("x-cache"),
                    x_db_queries=h.get("x-db-queries"),
                    request_id=rid,
                )
