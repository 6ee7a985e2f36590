"""A hand-written user journey: browse a category, open a product, sometimes write a review.

An example of a locustfile of your own: plain Locust, with the recorder plugin imported so that
`locust -f loadtests/journeys.py --perflab-samples s.csv` records too (`perflab load
--host URL --locustfile loadtests/journeys.py --users 5 --duration 20` would add the plugin
anyway). Percentiles then come from every request, not Locust's buckets, and each request
carries an `X-Request-ID` that the service logs.

Writes send an `Idempotency-Key`, and a bearer token when `--journey-token` is given, for
services that require auth on writes.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from locust import FastHttpUser, between, events, task

import perflab.locust_plugin  # noqa: F401  (records every request)


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--journey-categories", type=int, default=5, help="categories 1..N")
    parser.add_argument(
        "--journey-token", default="", help="bearer token for review writes", is_secret=True
    )


class Shopper(FastHttpUser):
    wait_time = between(0.5, 2.0)

    @task
    def browse_then_buy(self) -> None:
        options = self.environment.parsed_options
        category = random.randint(1, int(getattr(options, "journey_categories", 5)))
        page = self.client.get(f"/products?category={category}&limit=20", name="GET /products")
        if not 200 <= (page.status_code or 0) < 300 or not page.json()["items"]:
            return
        product = random.choice(page.json()["items"])["id"]
        self.client.get(f"/products/{product}", name="GET /products/{id}")
        if random.random() < 0.1:
            headers = {"Idempotency-Key": uuid.uuid4().hex}
            if token := getattr(options, "journey_token", ""):
                headers["Authorization"] = f"Bearer {token}"
            self.client.post(
                f"/products/{product}/reviews",
                name="POST /products/{id}/reviews",
                json={"rating": random.randint(1, 5), "text": "from a journey", "author": "locust"},
                headers=headers,
            )
