"""Turn faults on and off in a running catalog, from a notebook or a test.

```
from perflab import faults
faults.set(svc, latency_ms=50, jitter_ms=20)   # only these faults are on now
faults.get(svc)                                 # {"faults": {...}, "active": ["latency"]}
faults.clear(svc)
with faults.injected(svc, error_rate=0.2): ...  # on inside the block only
```
Faults: latency_ms, jitter_ms, error_rate, error_status (500/503), error_phase (before/after),
cache_outage, db_sleep_ms, cpu_burn_ms (see services/catalog/core/faults.py). Calls use an admin
token obtained with the demo admin's password.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx

from perflab import auth
from perflab.errors import LabError

if TYPE_CHECKING:
    from perflab.services import ServiceHandle


def _call(svc: ServiceHandle, method: str, body: dict | None = None) -> dict:
    r = httpx.request(
        method,
        f"{svc.url}/admin/faults",
        json=body,
        headers=auth.headers(svc, "admin"),
        verify=auth.verify_for(svc),
        timeout=30,
    )
    if r.status_code != 200:
        raise LabError(f"{method} /admin/faults failed: HTTP {r.status_code} {r.text[:300]}")
    return r.json()


def set(svc: ServiceHandle, **faults: float | str | bool) -> dict:
    """Replace the service's faults with these (everything not given is off)."""
    return _call(svc, "PUT", faults)


def get(svc: ServiceHandle) -> dict:
    return _call(svc, "GET")


def clear(svc: ServiceHandle) -> dict:
    return _call(svc, "DELETE")


@contextlib.contextmanager
def injected(svc: ServiceHandle, **faults: float | str | bool) -> Iterator[dict]:
    state = set(svc, **faults)
    try:
        yield state
    finally:
        clear(svc)
