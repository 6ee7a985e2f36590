"""Fixtures for the harness tests: known-latency loopback targets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from perflab.targets import Target, start_target


@pytest.fixture
def target(tmp_root: Path) -> Iterator[Callable[..., Target]]:
    """Start test servers (perflab.targets) for one test; all are stopped after it."""
    started: list[Target] = []

    def start(mode: str = "sleep", ms: float = 20.0, **kw: object) -> Target:
        t = start_target(mode, ms, log_dir=tmp_root / "targets", **kw)
        started.append(t)
        return t

    yield start
    for t in started:
        t.stop()
