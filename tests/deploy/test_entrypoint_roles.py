"""The image's roles, run for real without a container engine: the same entrypoint and commands
a container runs, on loopback, against the test database. The dataset job, the catalog and the
gateway behind it, then a Locust master with one worker (`perflab worker`) that loads the
gateway, every sample written by the master where LOCUST_PERFLAB_SAMPLES says."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from perflab.procs import free_port, http_ok, spawn, wait_until

pytestmark = pytest.mark.slow  # real services, real load

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = [sys.executable, str(ROOT / "deploy" / "entrypoint.py")]


def role(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ENTRYPOINT, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_roles_serve_and_load_like_the_containers(database_url, tmp_path):
    catalog_env = {
        "DATABASE_URL": database_url,
        "CATALOG_DATABASE_URL": database_url,
        "CATALOG_CACHE": "memory",
        "CATALOG_RATE_LIMIT_ENABLED": "false",
        "CATALOG_SECRETS_DIR": str(tmp_path / "secrets"),
    }
    seeded = role("seed", "--size", "tiny", env=catalog_env)
    assert seeded.returncode == 0, seeded.stderr
    assert "already there" in seeded.stdout  # the test dataset: reused, not regenerated
    waited = role("wait-for-data", "--timeout", "30", env=catalog_env)
    assert waited.returncode == 0 and "is there" in waited.stdout, waited.stderr
    # a database without the dataset: seed generates it; waiting on one that stays empty ends
    fresh = {"CATALOG_DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}"}
    empty = {"CATALOG_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}
    generated = role("seed", "--size", "tiny", env={**catalog_env, **fresh})
    assert generated.returncode == 0 and "generated in" in generated.stdout, generated.stderr
    gave_up = role("wait-for-data", "--timeout", "1", env={**catalog_env, **empty})
    assert gave_up.returncode == 1 and "gave up after 1 s" in gave_up.stderr
    bad = role("seed", "--size", "huge", env=catalog_env)
    assert bad.returncode == 1 and "unknown size 'huge'" in bad.stderr
    assert "Traceback" not in bad.stderr

    started = []
    try:
        port = free_port()
        loopback = ["--host", "127.0.0.1", "--port", str(port)]  # later flags win over the role's
        catalog = spawn(
            "catalog",
            [*ENTRYPOINT, "catalog", *loopback],
            env=catalog_env,
            output=tmp_path / "catalog.out",
        )
        started.append(catalog)
        catalog_url = f"http://127.0.0.1:{port}"
        wait_until(http_ok(catalog_url + "/healthz"), catalog, 60, "answering /healthz")
        assert role("healthcheck", catalog_url + "/healthz", env={}).returncode == 0

        port = free_port()
        gateway = spawn(
            "gateway",
            [*ENTRYPOINT, "gateway", "--host", "127.0.0.1", "--port", str(port)],
            env={"GATEWAY_CATALOG_URL": catalog_url},
            output=tmp_path / "gateway.out",
        )
        started.append(gateway)
        gateway_url = f"http://127.0.0.1:{port}"
        wait_until(http_ok(gateway_url + "/healthz"), gateway, 60, "answering /healthz")
        page = httpx.get(gateway_url + "/products/1", timeout=10)
        assert page.status_code == 200 and page.json()["id"] == 1

        load = {
            "LOCUST_HOST": gateway_url,
            "LOCUST_MIX": "caching",
            "LOCUST_PRODUCTS": "200",
            "LOCUST_CATEGORIES": "5",
        }
        master_port = free_port()
        master = spawn(
            "locust-master",
            [
                *ENTRYPOINT,
                "locust-master",
                "--headless",
                "--users",
                "4",
                "--spawn-rate",
                "4",
                "--run-time",
                "3s",
                "--expect-workers",
                "1",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                str(master_port),
                "--csv",
                str(tmp_path / "stats"),
                "--only-summary",
            ],
            # as in compose and k8s/: the master writes every sample its worker sends
            env={**load, "LOCUST_PERFLAB_SAMPLES": str(tmp_path / "samples" / "samples.csv")},
            output=tmp_path / "master.out",
        )
        started.append(master)
        (tmp_path / "worker").mkdir()
        worker = spawn(  # `perflab worker`, in a folder of its own: it shares no file
            "locust-worker",
            [*ENTRYPOINT, "locust-worker", "--master", f"127.0.0.1:{master_port}"],
            env=load,
            output=tmp_path / "worker.out",
            cwd=tmp_path / "worker",
        )
        started.append(worker)
        code = master.popen.wait(timeout=120)
        log = (tmp_path / "master.out").read_text()
        assert code == 0, log[-3000:]
        with (tmp_path / "stats_stats.csv").open() as f:
            rows = {r["Name"]: r for r in csv.DictReader(f)}
        total = rows["Aggregated"]
        assert int(total["Request Count"]) > 0 and int(total["Failure Count"]) == 0, total
        # the locustfile read LOCUST_MIX: it sent the caching mix, not its /healthz fallback
        assert set(rows) == {"GET /products/{id}", "Aggregated"}, set(rows)
        # every request the worker made reached the master's samples file, and only there
        with (tmp_path / "samples" / "samples.csv").open() as f:
            samples = list(csv.DictReader(f))
        # Locust's final count: the table it prints when it stops (its CSV is rewritten once a
        # second and may miss the last requests)
        final = next(ln for ln in log.splitlines() if ln.split()[:1] == ["Aggregated"])
        assert len(samples) == int(final.split()[1]) >= int(total["Request Count"]), final
        assert {s["endpoint"] for s in samples} == {"GET /products/{id}"}
        assert not any((tmp_path / "worker").iterdir())
        worker.popen.wait(timeout=60)  # it leaves with its master
        assert "Locust worker for the master" in (tmp_path / "worker.out").read_text()
    finally:
        for proc in reversed(started):
            proc.stop()
