"""The experiments the lab knows: which variants, which traffic, which load.

An experiment asks one question ("what do eager loading and indexes buy on the list
endpoint?") by running the same traffic against service variants that differ in one thing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from perflab.errors import LabError
from perflab.traffic import Endpoint, LoadProfile, parse_mix


@dataclass
class Variant:
    name: str
    settings: dict[str, Any]  # keyword arguments of Lab.service: str, bool, int or float
    # The app that serves this variant, when it is not the experiment's `service` (the
    # frameworks comparison serves each variant with a different app).
    service: str | None = None


@dataclass
class Experiment:
    name: str
    title: str
    question: str
    variants: list[Variant]
    mix: list[Endpoint]
    profile: LoadProfile
    quick_profile: LoadProfile
    service: str = "catalog"
    notes: list[str] = field(default_factory=list)
    # 0: the traffic draws from every product and the caches start cold. N > 0: it draws from
    # the N most popular products, and each of them is read once before each variant's load
    # (not recorded): warm caches, the steady state of a shop that has been open a while.
    # On a cold cache a Zipf tail keeps missing for minutes, and its misses, not the cache,
    # set the p95 (`warmed`; the demo's caching experiment).
    warm: int = 0

    @property
    def baseline(self) -> str:
        return self.variants[0].name

    def service_for(self, variant: Variant) -> str:
        return variant.service or self.service

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise LabError(
            f"experiment {self.name!r} has no variant {name!r}: "
            f"choose from {', '.join(v.name for v in self.variants)}"
        )

    def warmed(self, products: int) -> Experiment:
        """This experiment over the `products` most popular products, read once before each
        variant's load (`warm`)."""
        if products < 1:
            raise LabError(f"warm needs at least one product, not {products}")
        other = copy.deepcopy(self)
        other.warm = products
        return other

    def with_variants(self, names: list[str]) -> Experiment:
        other = copy.deepcopy(self)
        other.variants = [self.variant(n) for n in names]
        return other


SAMPLED = {"tracing": "ratio", "trace_ratio": 0.1}

EXPERIMENTS: dict[str, Experiment] = {
    "queries": Experiment(
        name="queries",
        title="Query optimization: N+1 and missing indexes vs eager loading and indexes",
        question="What do eager loading, SQL aggregates and indexes buy on GET /products?",
        variants=[
            Variant("naive", {"queries": "naive", "cache": "none"}),
            Variant("optimized", {"queries": "optimized", "cache": "none"}),
        ],
        mix=[Endpoint("GET /products", "/products?limit=20&category={category}")],
        profile=LoadProfile(model="closed", users=8, duration=30, warmup=5),
        quick_profile=LoadProfile(model="closed", users=4, duration=8, warmup=2),
    ),
    "caching": Experiment(
        name="caching",
        title="Caching: none vs in-process vs Redis, cache-aside with TTL",
        question="What does a cache buy on GET /products/{id} under Zipf-popular traffic?",
        variants=[
            # One request in ten traced (decided on the trace id): tracing every request would
            # roughly double what a cache hit costs (bench/results/hotpath.md, round 2) and
            # shrink the effect this lesson is about; a tenth still fills spans.jsonl.
            Variant("none", {"queries": "optimized", "cache": "none", **SAMPLED}),
            Variant("memory", {"queries": "optimized", "cache": "memory", **SAMPLED}),
            Variant("redis", {"queries": "optimized", "cache": "redis", **SAMPLED}),
        ],
        mix=[Endpoint("GET /products/{id}", "/products/{product}")],
        profile=LoadProfile(model="closed", users=8, duration=30, warmup=5),
        quick_profile=LoadProfile(model="closed", users=4, duration=8, warmup=2),
    ),
    "instrumentation": Experiment(
        name="instrumentation",
        title="Instrumentation: what logs, metrics and timing headers cost",
        question="How much throughput and latency does observability cost on a cached read?",
        variants=[
            # Tracing has its own experiment (`tracing`): off here, in both.
            Variant("on", {"queries": "optimized", "cache": "memory", "tracing": "off"}),
            Variant(
                "off",
                {
                    "queries": "optimized",
                    "cache": "memory",
                    "tracing": "off",
                    "log_enabled": False,
                    "metrics_enabled": False,
                    "headers_enabled": False,
                },
            ),
        ],
        mix=[Endpoint("GET /products/{id}", "/products/{product}")],
        profile=LoadProfile(model="closed", users=8, duration=30, warmup=5),
        quick_profile=LoadProfile(model="closed", users=4, duration=8, warmup=2),
    ),
    "tracing": Experiment(
        name="tracing",
        title="Tracing: what OpenTelemetry spans cost, off vs sampled 10% vs always",
        question="How much throughput and latency does tracing every request cost?",
        variants=[
            Variant("off", {"queries": "optimized", "cache": "memory", "tracing": "off"}),
            Variant(
                "sampled",
                {
                    "queries": "optimized",
                    "cache": "memory",
                    "tracing": "ratio",
                    "trace_ratio": 0.1,
                },
            ),
            Variant(
                "always",
                {"queries": "optimized", "cache": "memory", "tracing": "always"},
            ),
        ],
        mix=[Endpoint("GET /products/{id}", "/products/{product}")],
        profile=LoadProfile(model="closed", users=8, duration=30, warmup=5),
        quick_profile=LoadProfile(model="closed", users=4, duration=8, warmup=2),
        notes=[
            "Cache hits: the cheapest request the catalog serves, so the spans' share is largest.",
            "The lab traces every request by default (spans.jsonl); this measures what that costs.",
        ],
    ),
    "tls": Experiment(
        name="tls",
        title="TLS: what encryption in transit costs per request",
        question="How much latency and throughput does HTTPS cost on a cheap, cached endpoint?",
        variants=[
            Variant("http", {"queries": "optimized", "cache": "memory"}),
            # `tls` is not a service setting but a way of starting it: the lab serves HTTPS with
            # its self-signed certificate and the load verifies against it.
            Variant("https", {"queries": "optimized", "cache": "memory", "tls": True}),
        ],
        mix=[Endpoint("GET /products/{id}", "/products/{product}")],
        profile=LoadProfile(model="closed", users=8, duration=30, warmup=5),
        quick_profile=LoadProfile(model="closed", users=4, duration=8, warmup=2),
    ),
    "frameworks": Experiment(
        name="frameworks",
        title="Frameworks: the same endpoint in Flask, Django, FastAPI def and async def",
        question="What do the framework and its server cost on the same JSON endpoint?",
        # Each served as in production: Flask and Django under gunicorn (WSGI), FastAPI under
        # uvicorn (ASGI); one process each; no database, the same body serialized per request
        # by each framework (why: perflab_services/frameworks/__init__.py).
        variants=[
            Variant("flask", {}, service="flask"),
            Variant("django", {}, service="django"),
            Variant("fastapi-def", {}, service="fastapi-def"),
            Variant("fastapi-async", {}, service="fastapi-async"),
        ],
        mix=[Endpoint("GET /products/{id}", "/products/{product}")],
        profile=LoadProfile(model="closed", users=8, duration=30, warmup=5),
        quick_profile=LoadProfile(model="closed", users=4, duration=8, warmup=2),
    ),
    "gateway": Experiment(
        name="gateway",
        title="Monolith vs microservices: the same product page direct and through the gateway",
        question="What does one network hop through the gateway cost on the product page?",
        # `direct` is the page served in-process by the service that owns the data (what a
        # monolith does); `via-gateway` is the same catalog, same settings, behind the gateway
        # that a microservice front door adds: one more HTTP request, parse and serialization.
        # A memory cache makes the catalog's own work small, so the hop is what is measured.
        variants=[
            Variant("direct", {"queries": "optimized", "cache": "memory"}),
            Variant(
                "via-gateway",
                {"queries": "optimized", "cache": "memory"},
                service="gateway",
            ),
        ],
        mix=[Endpoint("GET /products/{id}", "/products/{product}")],
        profile=LoadProfile(model="closed", users=8, duration=30, warmup=5),
        quick_profile=LoadProfile(model="closed", users=4, duration=8, warmup=2),
    ),
}

DEMO = ["queries", "caching"]
# The demo's caching experiment runs warm over the 1,000 most popular products (`warm`): its
# 8 s of load show what a cache buys once it holds the shop's popular pages, at p50 and p95.
# Notebook 06 runs it cold, and shows the hit ratio climbing.
DEMO_WARM = {"caching": 1000}


def demo() -> list[Experiment]:
    """The experiments `perflab demo` runs, as it runs them."""
    exps = [get(name) for name in DEMO]
    return [e.warmed(DEMO_WARM[e.name]) if e.name in DEMO_WARM else e for e in exps]


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise LabError(f"unknown experiment {name!r}: choose one of {', '.join(EXPERIMENTS)}")
    return copy.deepcopy(EXPERIMENTS[name])


def mix(spec: str) -> list[Endpoint]:
    """A traffic mix from `--mix`: an experiment's name, a path, JSON or @file (`parse_mix`)."""
    return parse_mix(spec, {name: exp.mix for name, exp in EXPERIMENTS.items()})
