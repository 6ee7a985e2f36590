from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from perflab.lab import service_env
from perflab.services import ServiceHandle, start_service


@pytest.fixture(scope="session")
def start_gateway(tmp_root: Path) -> Iterator[Callable[..., ServiceHandle]]:
    """Start a gateway (real uvicorn subprocess) in front of `catalog_url`; stopped at the end."""
    started: list[ServiceHandle] = []

    def start(label: str, catalog_url: str, **settings: object) -> ServiceHandle:
        env = service_env("gateway", {"catalog_url": catalog_url, **settings})
        handle = start_service("gateway", env, tmp_root / "logs", label=label)
        started.append(handle)
        return handle

    yield start
    for h in started:
        h.stop()


@pytest.fixture(scope="module")
def catalog(start_catalog) -> ServiceHandle:
    return start_catalog("g-catalog", queries="optimized", cache="none")


@pytest.fixture(scope="module")
def gateway(start_gateway, catalog) -> ServiceHandle:
    return start_gateway("g-gateway", catalog.url)
