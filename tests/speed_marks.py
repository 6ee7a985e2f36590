"""`slow` for every test that starts a service or drives Locust, so `make test-fast` is fast.

- A test that uses a fixture which starts a process (`SERVICE_FIXTURES`, directly or through
  another fixture) is marked `slow` here: nobody has to remember.
- A test that starts one some other way (a `Lab`, `start_service`, `run_load` in its body) must
  say `slow` itself; if it does not, the guard below fails it with a sentence saying so. The
  guard watches `perflab.procs.ManagedProcess`, through which the lab starts every service,
  redis-server and Locust process (it does not see processes a CLI subprocess starts: those
  tests are marked by hand).

Loaded from tests/conftest.py (`pytest_plugins`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

# Fixtures that start a service or a server process (tests/conftest.py, tests/perflab/conftest.py).
SERVICE_FIXTURES = {"start_services", "start_catalog", "start_gateway", "redis_url", "target"}

_current: dict[str, pytest.Item | None] = {"item": None}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def _allowed(item: pytest.Item | None) -> bool:
    return (
        item is None
        or any(item.iter_markers(name="slow"))
        or any(item.iter_markers(name="notebook"))
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[Any]:
    _current["item"] = item
    try:
        return (yield)
    finally:
        _current["item"] = None


def pytest_configure(config: pytest.Config) -> None:
    from perflab import procs

    original = procs.ManagedProcess.__init__
    if getattr(original, "_speed_guard", False):
        return

    def guarded(self: procs.ManagedProcess, name: str, popen: Any, output: Any) -> None:
        item = _current["item"]
        if not _allowed(item):
            popen.kill()
            popen.wait()
            pytest.fail(
                f"{item.nodeid if item else '?'} started {name!r} but is not marked slow: "
                "add @pytest.mark.slow (or use a fixture that starts services)",
                pytrace=False,
            )
        original(self, name, popen, output)

    guarded._speed_guard = True  # type: ignore[attr-defined]
    procs.ManagedProcess.__init__ = guarded  # type: ignore[method-assign]
