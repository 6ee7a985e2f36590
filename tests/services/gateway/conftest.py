from __future__ import annotations

import pytest

from perflab.services import ServiceHandle


@pytest.fixture(scope="module")
def catalog(start_catalog) -> ServiceHandle:
    return start_catalog("g-catalog", queries="optimized", cache="none")


@pytest.fixture(scope="module")
def gateway(start_gateway, catalog) -> ServiceHandle:
    return start_gateway("g-gateway", catalog.url)
