"""A circuit breaker: stop calling a dependency that keeps failing, and probe it later.

closed -> (N failures in a row) -> open -> (cool-down passed) -> half-open: one probe goes
through; success closes the circuit, failure opens it again for another cool-down. While open,
callers fail at once instead of queueing behind timeouts, which keeps the gateway responsive and
gives the dependency room to recover. One breaker per worker process; the event loop runs one
coroutine at a time, so no lock is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int,
        cooldown_seconds: float,
        *,
        on_open: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self.on_open = on_open
        self.clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self.clock() - self._opened_at >= self.cooldown_seconds:
            return HALF_OPEN
        return OPEN

    def retry_after(self) -> float:
        """Seconds until the next probe is allowed (0 when closed or half-open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_seconds - self.clock())

    def allow(self) -> bool:
        """May a call go out now? In half-open, only one probe at a time."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        self.failures += 1
        was_probe = self._probing
        self._probing = False
        if was_probe or (self._opened_at is None and self.failures >= self.failure_threshold):
            self._opened_at = self.clock()
            if self.on_open is not None:
                self.on_open()

    def release(self) -> None:
        """A call that neither succeeded nor failed (cancelled): let another probe go."""
        self._probing = False
