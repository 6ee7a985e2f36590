"""The circuit breaker's states, driven by a clock the test controls."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from perflab_services.gateway.core.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from perflab_services.gateway.core.config import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_half_opens_after_cooldown():
    clock, opened = Clock(), []
    b = CircuitBreaker(3, 2.0, on_open=lambda: opened.append(clock.now), clock=clock)
    b.failure()
    b.failure()
    b.success()  # a success resets the count: failures must be consecutive
    b.failure()
    b.failure()
    assert b.state == CLOSED and b.allow()
    b.failure()
    assert b.state == OPEN and opened == [100.0]
    assert not b.allow()
    assert b.retry_after() == pytest.approx(2.0)
    clock.now += 2.0
    assert b.state == HALF_OPEN
    assert b.allow(), "one probe goes through"
    assert not b.allow(), "and only one at a time"
    b.failure()  # the probe failed: open again for a whole cool-down
    assert b.state == OPEN and len(opened) == 2
    clock.now += 2.0
    assert b.allow()
    b.success()
    assert b.state == CLOSED and b.allow() and b.allow()


def test_a_cancelled_probe_lets_the_next_one_through():
    clock = Clock()
    b = CircuitBreaker(1, 1.0, clock=clock)
    b.failure()
    clock.now += 1.0
    assert b.allow()
    b.release()
    assert b.allow()


def test_catalog_url_must_be_http():
    with pytest.raises(ValidationError, match="must start with http"):
        Settings(catalog_url="127.0.0.1:8000")
    assert Settings(catalog_url="http://127.0.0.1:8000/").catalog_url == "http://127.0.0.1:8000"
