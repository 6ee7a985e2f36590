"""Tests of the catalog that notebook 14 runs: in-process (FastAPI's TestClient, no server) and
property-based (hypothesis draws the inputs, so a test checks a rule, not three examples).

Not part of `make test` (it collects `tests/` only): the notebook runs them, against the tiny
dataset the lab generates, and runs them again with a bug plugged in to show them catch it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perflab.lab import default_database_url
from perflab_services.catalog.core.config import Settings
from perflab_services.catalog.main import create_app

# The client fixture is shared by every example hypothesis draws: it is read-only here.
EXAMPLES = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = Settings(
        database_url=os.environ.get("CATALOG_TEST_DATABASE_URL", default_database_url("tiny")),
        cache="none",
        log_enabled=False,
        rate_limit_enabled=False,
        secrets_dir=str(tmp_path_factory.mktemp("secrets")),
    )
    with TestClient(create_app(config)) as c:
        yield c


def test_a_product_page(client: TestClient) -> None:
    r = client.get("/products/1")
    assert r.status_code == 200
    assert r.json()["id"] == 1


@EXAMPLES
@given(limit=st.integers(1, 100), category=st.integers(1, 5))
def test_a_page_holds_its_category_only_and_at_most_limit(
    client: TestClient, limit: int, category: int
) -> None:
    r = client.get("/products", params={"limit": limit, "category": category})
    assert r.status_code == 200
    items = r.json()["items"]
    assert len(items) <= limit
    assert all(item["category_id"] == category for item in items)


@EXAMPLES
@given(limit=st.one_of(st.integers(max_value=0), st.integers(min_value=101)))
def test_a_limit_out_of_range_is_a_422_never_a_500(client: TestClient, limit: int) -> None:
    assert client.get("/products", params={"limit": limit}).status_code == 422


def test_the_dataset_is_there() -> None:
    url = os.environ.get("CATALOG_TEST_DATABASE_URL", default_database_url("tiny"))
    assert not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()
