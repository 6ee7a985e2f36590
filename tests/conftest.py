"""Shared fixtures: a real database with the tiny dataset, a real Redis, real services.

Defaults are the embedded ones (a SQLite file in a temp folder, the lab's own redis-server).
`DATABASE_URL` and `REDIS_URL` switch the same tests to external servers (CI runs them against
PostgreSQL and the system Redis too). Results and logs go to a temp folder, not data/.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="perflab-tests-"))
os.environ.setdefault("PERFLAB_DATA_DIR", str(_TMP / "data"))
os.environ.setdefault("PERFLAB_RESULTS_DIR", str(_TMP / "results"))

from perflab.lab import service_env  # noqa: E402
from perflab.redis_server import EmbeddedRedis  # noqa: E402
from perflab.services import ServiceHandle, start_service  # noqa: E402
from perflab_services.catalog import datagen  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytest_plugins = ["speed_marks"]  # `slow` on every test that starts a service (make test-fast)


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return _TMP


@pytest.fixture(scope="session")
def database_url(tmp_root: Path) -> str:
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_root / 'catalog-tiny.sqlite3'}"
    datagen.ensure(url, "tiny", 42)
    return url


@pytest.fixture(scope="session")
def redis_url(tmp_root: Path) -> Iterator[str]:
    """`REDIS_URL` (a server of the machine), else the lab's own redis-server: a `unix://` URL,
    its socket in a private folder, with the server's password."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with EmbeddedRedis(log_dir=tmp_root / "redis") as r:
        yield r.url


@pytest.fixture(scope="session")
def start_services(tmp_root: Path) -> Iterator[Callable[..., ServiceHandle]]:
    """`start_services("gateway", label, catalog_url=...)`: a service as a real uvicorn
    subprocess, its environment from the lab's `service_env` (so the lab's defaults hold: rate
    limit off unless a test turns it on, since all test services share one client IP and, with
    REDIS_URL, one Redis). All are stopped at session end."""
    started: list[ServiceHandle] = []

    def start(
        name: str, label: str, workers: int = 1, tls: bool = False, **settings: object
    ) -> ServiceHandle:
        env = service_env(name, settings)
        handle = start_service(name, env, tmp_root / "logs", label=label, workers=workers, tls=tls)
        started.append(handle)
        return handle

    yield start
    for h in started:
        h.stop()


@pytest.fixture(scope="session")
def start_catalog(database_url: str, start_services) -> Callable[..., ServiceHandle]:
    """Start a catalog variant on the session's database: `start_catalog(label, **settings)`."""

    def start(label: str, **settings: object) -> ServiceHandle:
        return start_services("catalog", label, database_url=database_url, **settings)

    return start


@pytest.fixture(scope="session")
def login() -> Callable[..., dict[str, str]]:
    """`login(svc, "editor")` -> Authorization headers; one real login per user, renewed
    every 5 minutes.

    Every test service shares the session's secrets folder, so one token works for all. A token
    lives 15 minutes (`jwt_ttl_seconds`) and a suite on a busy machine runs longer than that: a
    token kept for the whole session expired mid-run ("token expired" in six tests).
    """
    from perflab import auth

    renew_after = 300.0
    cache: dict[str, tuple[float, dict[str, str]]] = {}

    def headers(svc: ServiceHandle, user: str = "editor") -> dict[str, str]:
        got = cache.get(user)
        if got is None or time.monotonic() - got[0] > renew_after:
            got = cache[user] = (time.monotonic(), auth.headers(svc, user))
        return got[1]

    return headers


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
