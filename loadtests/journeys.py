"""A hand-written user journey: browse a category, open a product, sometimes write a review.

An example of a locustfile of your own that still gives the lab raw samples: pass it with
`perflab load --host URL --locustfile loadtests/journeys.py --users 5 --duration 20`. The lab's
runner tells it where to write samples through `PERFLAB_LOAD`; it uses the same `Recorder` as
the lab's own locustfile, so percentiles come from every request, not Locust's buckets.
Writes send an `Idempotency-Key`, and a bearer token when `PERFLAB_LOAD` carries one
(`{"token": "..."}`) for services that require auth on writes.
"""

from __future__ import annotations

import json
import os
import random
import time

from locust import FastHttpUser, between, events, task

from perflab.recorder import Recorder, new_request_id

CONFIG: dict = json.loads(os.environ.get("PERFLAB_LOAD", "{}"))
_recorder: Recorder | None = None


@events.init.add_listener
def _on_init(environment, **_kw) -> None:
    global _recorder
    if CONFIG.get("samples"):
        _recorder = Recorder(CONFIG["samples"])


@events.quitting.add_listener
def _on_quit(environment, **_kw) -> None:
    if _recorder is not None:
        _recorder.close()


class Shopper(FastHttpUser):
    wait_time = between(0.5, 2.0)

    def _call(self, name: str, method: str, path: str, **kw) -> dict | None:
        rid = new_request_id()
        headers = {"X-Request-ID": rid, **kw.pop("headers", {})}
        start_wall, start = time.time(), time.perf_counter()
        with self.client.request(
            method, path, name=name, headers=headers, catch_response=True, **kw
        ) as resp:
            end = time.perf_counter()
            ok = 200 <= (resp.status_code or 0) < 400
            resp.success() if ok else resp.failure(f"HTTP {resp.status_code}")
            if _recorder is not None:
                h = resp.headers or {}
                _recorder.record(
                    intended_pc=start, start_pc=start, end_pc=end, start_wall=start_wall,
                    status=resp.status_code or 0, ok=ok, endpoint=name,
                    x_cache=h.get("x-cache"), x_db_queries=h.get("x-db-queries"),
                    request_id=rid,
                )  # fmt: skip
            return resp.json() if ok else None

    @task
    def browse_then_buy(self) -> None:
        category = random.randint(1, int(CONFIG.get("categories", 5)))
        page = self._call("GET /products", "GET", f"/products?category={category}&limit=20")
        if not page or not page["items"]:
            return
        product = random.choice(page["items"])["id"]
        self._call("GET /products/{id}", "GET", f"/products/{product}")
        if random.random() < 0.1:
            headers = {"Idempotency-Key": new_request_id()}
            if CONFIG.get("token"):
                headers["Authorization"] = f"Bearer {CONFIG['token']}"
            self._call(
                "POST /products/{id}/reviews", "POST", f"/products/{product}/reviews",
                json={"rating": random.randint(1, 5), "text": "from a journey", "author": "locust"},
                headers=headers,
            )  # fmt: skip
