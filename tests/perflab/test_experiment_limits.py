"""The lab's experiments measure speed, not the rate limiter: every variant turns it off, and
the setting is part of what the manifest records for the variant."""

from __future__ import annotations

import pytest

from perflab import experiments
from perflab.lab import Lab, service_env


def test_every_experiment_variant_runs_without_rate_limit():
    lab = Lab(database_url="sqlite:///unused.sqlite3", redis_url="redis://127.0.0.1:1/0")
    for exp in experiments.EXPERIMENTS.values():
        for variant in exp.variants:
            if exp.service_for(variant) != "catalog":
                continue  # the frameworks comparison's apps have no rate limiter
            env = lab.catalog_env(**variant.settings)
            assert env["CATALOG_RATE_LIMIT_ENABLED"] == "false", (exp.name, variant.name)


def test_service_env_is_the_one_place_a_variant_becomes_an_environment():
    env = service_env("catalog", {"queries": "naive", "log_enabled": False, "cache_ttl_seconds": 2})
    assert env == {
        "CATALOG_RATE_LIMIT_ENABLED": "false",
        "CATALOG_TRACING": "always",
        "CATALOG_QUERIES": "naive",
        "CATALOG_LOG_ENABLED": "false",
        "CATALOG_CACHE_TTL_SECONDS": "2",
    }
    assert service_env("gateway", {"retries": 0}) == {
        "GATEWAY_TRACING": "always",
        "GATEWAY_RETRIES": "0",
    }
    assert service_env("catalog", {"tracing": "off"})["CATALOG_TRACING"] == "off"
    assert service_env("fastapi-def", {}) == {}


def test_lab_services_are_unlimited_unless_asked():
    lab = Lab(database_url="sqlite:///unused.sqlite3", redis_url="redis://127.0.0.1:1/0")
    assert lab.catalog_env()["CATALOG_RATE_LIMIT_ENABLED"] == "false"
    assert lab.catalog_env(rate_limit_enabled=True)["CATALOG_RATE_LIMIT_ENABLED"] == "true"


@pytest.mark.slow  # real load on both variants
def test_tls_experiment_runs_both_variants_over_their_own_scheme(database_url, tmp_root):
    from perflab import experiments
    from perflab.lab import Lab
    from perflab.loadgen import LoadProfile
    from perflab.runner import run_experiments

    with Lab(size="tiny", database_url=database_url, log_dir=tmp_root / "tls-logs") as lab:
        run = run_experiments(
            [experiments.get("tls")],
            lab=lab,
            profile=LoadProfile(users=2, duration=3, warmup=1),
            progress=False,
            echo=False,
        )
    summary = run.summary.set_index("variant")
    assert set(summary.index) == {"http", "https"}
    assert (summary["failures"] == 0).all() and (summary["requests"] > 0).all()
    env = run.manifest["experiments"]["tls"]["variants"]
    assert env["https"]["settings"]["tls"] is True
    logs = run.logs
    assert set(logs["variant"]) >= {"http", "https"}
