"""The container's entrypoint: one image, and the first argument picks what it runs.

    docker run perflab catalog            # the catalog on :8000 (uvicorn)
    docker run perflab gateway            # the gateway on :8000 (GATEWAY_CATALOG_URL)
    docker run perflab seed --size small  # generate the dataset unless the database has it
    docker run perflab wait-for-data      # wait until the dataset exists (an init container)
    docker run perflab locust-master      # Locust's master: web UI :8089, workers on :5557
    docker run perflab locust-worker --master HOST[:PORT]   # perflab worker: samples to master
    docker run perflab healthcheck [URL]  # exit 0 when URL (default the local /healthz) is 200
    docker run perflab k8s-secret         # print a Kubernetes Secret with fresh secrets

Why a script and not one shell line per role in each manifest: compose and Kubernetes run the
same roles, so each command is written once, here, and tested (tests/deploy). The apps come from
`perflab.services.APPS`, the table the lab starts them from, so a renamed factory cannot leave
the image behind. Arguments after the role go to the program (`catalog --workers 2`; a later
`--port` wins over the default).

Settings come from the environment, as `Settings` reads it (CATALOG_*, GATEWAY_*, DATABASE_URL,
REDIS_URL); Locust reads its own LOCUST_* variables, and so does the lab's locustfile
(`LOCUST_MIX`, `LOCUST_PRODUCTS`, …).
Roles that replace this process (`exec`) leave the server as PID 1, so it gets the container's
SIGTERM directly and shuts down gracefully.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, MutableMapping
from pathlib import Path

PORT = 8000
# In the image this file is /opt/perflab/deploy/entrypoint.py and the locustfiles are in
# /opt/perflab/loadtests: the same layout as the repository (the wheel holds no locustfiles).
LOCUSTFILE = Path(__file__).resolve().parent.parent / "loadtests" / "lab.py"
LOCUST_MASTER_PORT = 5557
ROLES_HELP = __doc__.split("\n\n")[1] if __doc__ else ""


def server_argv(service: str, args: list[str]) -> list[str]:
    """uvicorn serving `service` on all interfaces of the container, port 8000.

    No access log: the services write their own JSON line per request. Graceful shutdown within
    20 s, inside Kubernetes' default 30 s termination grace period.
    """
    from perflab.services import APPS, UVICORN_OPTIONS

    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        APPS[service],
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--no-access-log",
        "--timeout-graceful-shutdown",
        "20",
        *UVICORN_OPTIONS,  # no trust in X-Forwarded-For, bounded request heads (why: there)
        *args,
    ]


def multiprocess_metrics(args: list[str], env: MutableMapping[str, str] = os.environ) -> None:
    """With `--workers N` > 1, give prometheus_client a folder to share between the workers, as
    the lab does (`perflab.services.start_service`), so /metrics counts every worker's requests.
    One worker per container (and more replicas) is the usual choice; this keeps N honest."""
    workers, _ = _take_option(args, "--workers")
    several = workers is not None and workers.isdigit() and int(workers) > 1
    if several and "PROMETHEUS_MULTIPROC_DIR" not in env:
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-")


def locust_master_argv(args: list[str]) -> list[str]:
    """Locust's master with the lab's locustfile: it runs no users, it coordinates workers and
    serves the web UI (LOCUST_HOST, LOCUST_USERS, ... configure it, as for any Locust), and
    writes every sample its workers send to `LOCUST_PERFLAB_SAMPLES` (appending: a restarted
    master keeps the earlier runs' samples in the file)."""
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--master", *args]


def locust_worker_argv(args: list[str]) -> list[str]:
    """`perflab worker --master HOST[:PORT]`: the lab's Locust worker, as on any other machine.

    It keeps no sample file: every sample goes to the master over Locust's own connection
    (`perflab.locust_plugin`), and the master writes them where `LOCUST_PERFLAB_SAMPLES` says
    (a volume, in compose and k8s/, so they outlive its container). It waits for the master
    (`--wait`, here 120 s: the master may start after its workers), then says in one line that it
    cannot reach it. Locust's output goes to the container's log. Later arguments win
    (`--wait 30`, `--locustfile PATH`).
    """
    master, rest = _take_option(args, "--master")
    if not master:
        raise SystemExit("locust-worker needs --master HOST[:PORT] (the Locust master's address)")
    host, _, port = master.partition(":")
    if not host or (port and not port.isdigit()):
        raise SystemExit(f"locust-worker: --master {master!r}: give HOST or HOST:PORT")
    return [
        sys.executable,
        "-m",
        "perflab.cli",
        "worker",
        "--master",
        f"{host}:{port or LOCUST_MASTER_PORT}",
        "--locustfile",
        str(LOCUSTFILE),  # the master's own file (the image's copy of loadtests/)
        "--wait",
        "120",
        "--log",
        "/dev/stdout",
        *rest,
    ]


def _take_option(args: list[str], name: str) -> tuple[str | None, list[str]]:
    """`--name VALUE` or `--name=VALUE` out of `args`: (value, the other arguments)."""
    value, rest, i = None, [], 0
    while i < len(args):
        arg = args[i]
        if arg == name and i + 1 < len(args):
            value, i = args[i + 1], i + 2
            continue
        if arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def _database_url() -> str:
    """The catalog's database, read exactly as the catalog reads it (its `Settings`)."""
    from perflab_services.catalog.core.config import Settings

    return Settings().database_url


def seed(args: list[str]) -> int:
    """Generate the dataset (`--size`, `--seed`) unless the database already holds it."""
    from perflab_services.catalog import datagen

    size, rest = _take_option(args, "--size")
    seed_value, rest = _take_option(rest, "--seed")
    if rest:
        raise SystemExit(f"seed: unexpected arguments {rest}; use --size NAME --seed N")
    size = size or "small"
    if size not in datagen.SIZES:
        raise SystemExit(f"seed: unknown size {size!r}; choose one of {', '.join(datagen.SIZES)}")
    if seed_value is not None and not seed_value.isdigit():
        raise SystemExit(f"seed: --seed must be a whole number, got {seed_value!r}")
    info = datagen.ensure(_database_url(), size, int(seed_value or 42))
    what = "already there" if info.get("reused") else f"generated in {info['seconds']} s"
    print(f"dataset {size}: {info['products']} products, {info['reviews']} reviews ({what})")
    return 0


def wait_for_data(args: list[str]) -> int:
    """Wait (up to `--timeout` s, default 600) until the database holds a generated dataset.

    An init container of the catalog: the seed job drops and recreates the tables, so a catalog
    that started before it would lose the indexes it creates at start-up.
    """
    from perflab_services.catalog import datagen

    timeout, rest = _take_option(args, "--timeout")
    if rest:
        raise SystemExit(f"wait-for-data: unexpected arguments {rest}; use --timeout SECONDS")
    if timeout is not None and not timeout.isdigit():
        raise SystemExit(f"wait-for-data: --timeout must be whole seconds, got {timeout!r}")
    deadline = time.monotonic() + int(timeout or 600)
    last_said = 0.0
    while True:
        try:
            info = datagen.dataset_info(_database_url())
            problem = "no dataset yet (is the seed job done?)"
        except Exception as exc:  # the database is not up yet: keep waiting, say why
            info, problem = None, f"database not reachable: {str(exc).splitlines()[0]}"
        if info is not None:
            print(f"dataset {info.get('size')} is there: {info.get('products')} products")
            return 0
        if time.monotonic() > deadline:
            print(f"wait-for-data: gave up after {timeout or 600} s: {problem}", file=sys.stderr)
            return 1
        if time.monotonic() - last_said > 10:
            print(f"waiting: {problem}", flush=True)
            last_said = time.monotonic()
        time.sleep(1)


def healthcheck(args: list[str]) -> int:
    """Exit 0 if the URL (default this container's /healthz) answers 200 within 2 s."""
    url = args[0] if args else f"http://127.0.0.1:{PORT}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 0 if resp.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck {url}: {exc}", file=sys.stderr)
        return 1


def k8s_secret(args: list[str]) -> int:
    """Print the `perflab-secrets` Secret (JSON, which kubectl reads as YAML) with fresh values.

    `docker run --rm perflab k8s-secret | kubectl apply -f -` (or, in a checkout,
    `.venv/bin/python deploy/entrypoint.py k8s-secret | kubectl apply -f -`). It holds the
    PostgreSQL password (and the DATABASE_URL built from it) and the catalog's secrets folder:
    the JWT signing key and the demo users' passwords, shared by every catalog replica, so a
    token or a login works whichever replica answers.
    """
    from perflab_services.catalog.core.security import DEMO_USERS

    namespace, rest = _take_option(args, "--namespace")
    if rest:
        raise SystemExit(f"k8s-secret: unexpected arguments {rest}; use --namespace NAME")
    password = secrets.token_urlsafe(24)
    demo = {user: secrets.token_urlsafe(12) for user in DEMO_USERS}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "perflab-secrets", "namespace": namespace or "perflab"},
        "type": "Opaque",
        "stringData": {
            "POSTGRES_PASSWORD": password,
            "DATABASE_URL": f"postgresql+psycopg://perflab:{password}@postgres:5432/perflab",
            ".jwt-secret": secrets.token_hex(32),
            ".demo-users.json": json.dumps(demo, indent=1),
        },
    }
    print(json.dumps(secret, indent=2))
    return 0


EXEC_ROLES: dict[str, Callable[[list[str]], list[str]]] = {
    "catalog": lambda args: server_argv("catalog", args),
    "gateway": lambda args: server_argv("gateway", args),
    "locust-master": locust_master_argv,
    "locust-worker": locust_worker_argv,
}
RUN_ROLES: dict[str, Callable[[list[str]], int]] = {
    "seed": seed,
    "wait-for-data": wait_for_data,
    "healthcheck": healthcheck,
    "k8s-secret": k8s_secret,
}


def main(argv: list[str]) -> int:
    role, args = (argv[0], argv[1:]) if argv else ("catalog", [])
    if role in EXEC_ROLES:
        if role in ("catalog", "gateway"):
            multiprocess_metrics(args)
        command = EXEC_ROLES[role](args)
        os.execv(command[0], command)
    if role in RUN_ROLES:
        return RUN_ROLES[role](args)
    if role in ("-h", "--help", "help"):
        print(ROLES_HELP)
        return 0
    print(
        f"unknown role {role!r}: choose one of {', '.join([*EXEC_ROLES, *RUN_ROLES])}",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
