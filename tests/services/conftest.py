from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from perflab.services import ServiceHandle


def _log_lines(path: Path, request_id: str, count: int = 1, timeout: float = 5.0) -> list[dict]:
    """The JSON log lines of one request id, waiting up to `timeout` s for `count` of them."""
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text()
        whole = text[: text.rfind("\n") + 1]  # a batch being written may end in half a line
        lines = [json.loads(x) for x in whole.splitlines() if x.strip()]
        found = [x for x in lines if x.get("request_id") == request_id]
        if len(found) >= count:
            break
        time.sleep(0.05)
    return found


@pytest.fixture(scope="session")
def log_lines() -> Callable[..., list[dict]]:
    """`log_lines(svc.log_file, request_id, count=1)`: a service's log lines for one request."""
    return _log_lines


@pytest.fixture(scope="session")
def start_gateway(start_services) -> Callable[..., ServiceHandle]:
    """A gateway in front of `catalog_url`: `start_gateway(label, catalog_url, **settings)`."""

    def start(label: str, catalog_url: str, **settings: object) -> ServiceHandle:
        return start_services("gateway", label, catalog_url=catalog_url, **settings)

    return start


@pytest.fixture(scope="session")
def edge_catalog(start_catalog) -> ServiceHandle:
    """A catalog that the edge tests (bad input, schema fuzz) attack directly and through
    `edge_gateway`."""
    return start_catalog("t-edge", queries="optimized", cache="memory")


@pytest.fixture(scope="session")
def edge_gateway(start_gateway, edge_catalog) -> ServiceHandle:
    return start_gateway("t-edge-gw", edge_catalog.url)
