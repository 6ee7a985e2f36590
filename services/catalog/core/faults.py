"""Fault injection: make a running catalog slow, failing, cache-less or CPU-bound on demand.

The lab turns faults on and off at run time (`PUT/GET/DELETE /admin/faults`, or
`perflab.faults.set(svc, latency_ms=50)`) to show what each one does to latency, errors and
the metrics, and to test that retries, breakers and fail-open caches really work.

- `latency_ms` (+ `jitter_ms`, uniform): sleep before the request is handled.
- `error_rate` / `error_status` / `error_phase`: answer that fraction of requests with a
  deliberate 500 or 503. Phase `before` fails the request without running it; `after` runs it
  (a write is committed) and then loses the answer, the case idempotency keys exist for.
- `cache_outage`: the cache behaves as if Redis were down (bypass, counted as an error).
- `db_sleep_ms`: each SQL statement is delayed (a slow or overloaded database).
- `cpu_burn_ms`: busy CPU work per request, on the event loop like a CPU-heavy handler.

Faults never touch `/admin`, `/auth`, `/healthz` and `/metrics`, so the lab can always switch
them off and keep watching. While a fault is on, each request's log line has a `fault` field
and `fault_active{fault=...}` is 1. With several uvicorn workers, the state is shared through a
small file named after the service instance (see `Faults`).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import stat
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, event

from perflab_services.catalog.core.cache import in_thread
from perflab_services.common import context
from perflab_services.common.asgi import Receive, Scope, Send, send_json

EXEMPT_PREFIXES = ("/admin", "/auth", "/healthz", "/metrics")
FAULT_NAMES = ("latency", "errors", "cache_outage", "slow_db", "cpu_burn")
# True while an exempt request (admin, health...) runs: its SQL is never slowed down.
_exempt: ContextVar[bool] = ContextVar("perflab_fault_exempt", default=False)


class FaultSpec(BaseModel):
    """The faults to inject; everything left out is off."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(0, ge=0, le=30_000, description="added before each request")
    jitter_ms: float = Field(0, ge=0, le=30_000, description="plus uniform 0..jitter_ms")
    error_rate: float = Field(0, ge=0, le=1, description="fraction answered with error_status")
    error_status: Literal[500, 503] = 503
    error_phase: Literal["before", "after"] = "before"
    cache_outage: bool = False
    db_sleep_ms: float = Field(0, ge=0, le=10_000, description="delay per SQL statement")
    cpu_burn_ms: float = Field(0, ge=0, le=5_000, description="busy CPU time per request")

    def active(self) -> list[str]:
        on = {
            "latency": self.latency_ms > 0 or self.jitter_ms > 0,
            "errors": self.error_rate > 0,
            "cache_outage": self.cache_outage,
            "slow_db": self.db_sleep_ms > 0,
            "cpu_burn": self.cpu_burn_ms > 0,
        }
        return [name for name in FAULT_NAMES if on[name]]


def instance_id() -> str | None:
    """What names this service instance in all its uvicorn workers; None with a single process.

    `uvicorn --workers N` starts the workers with multiprocessing, so their parent is the
    master. Its start time (Linux) is part of the name, so a reused pid never inherits the
    faults of an earlier run.
    """
    parent = multiprocessing.parent_process()
    if parent is None or not parent.pid:
        return None
    try:
        started = Path(f"/proc/{parent.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        started = "0"
    return f"{parent.pid}-{started}"


class UnsafeFolder(RuntimeError):
    """A folder for shared state that someone else could write to or redirect."""


def private_folder(path: Path) -> Path:
    """`path`, created 0700 if missing, and refused unless it is a real folder (not a link)
    owned by this user that nobody else may write to or read.

    Whoever controls the folder of the fault state controls the faults: a shared temp folder
    another local user created first (`/tmp/perflab-faults-<uid>` once) let them inject faults
    without a token, and a link planted in it made an admin's `PUT /admin/faults` overwrite the
    file it pointed at.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700, parents=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(f"{path} is not a folder (a link?): remove it")
    if info.st_uid != os.getuid():
        raise UnsafeFolder(f"{path} belongs to user {info.st_uid}, not to us: remove it")
    if info.st_mode & 0o077:
        raise UnsafeFolder(
            f"{path} is open to other users (mode {info.st_mode & 0o777:o}): chmod 700"
        )
    return path


def default_state_file(data_dir: Path | None = None) -> Path | None:
    """A file shared by the workers of this instance; None when there is only one process.

    It lives in a private folder: `$XDG_RUNTIME_DIR/perflab` (per user, on tmpfs, made for this)
    when there is one, else `<data_dir>/run` (the service's own data folder: its secrets dir).
    """
    instance = instance_id()
    if instance is None:
        return None
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and Path(runtime).is_dir():
        base = Path(runtime) / "perflab"
    else:
        base = Path(data_dir or "data") / "run"
    return private_folder(base) / f"catalog-{instance}.json"


class Faults:
    """The current faults, shared by all workers of one service through a small state file.

    With one process the state is just memory. With several workers, a `PUT` reaches one: it
    writes the spec to the file (atomic rename); every worker looks at the file's mtime at most
    every `poll_seconds` and reloads it, so a fault reaches all workers within a fraction of a
    second, at the cost of one `stat` per quarter second per worker.
    """

    def __init__(
        self,
        gauge: Any = None,
        logger: Any = None,
        state_file: Path | None = None,
        poll_seconds: float = 0.25,
    ) -> None:
        self._spec = FaultSpec()
        self.gauge = gauge
        self.logger = logger
        self.state_file = state_file
        self.poll_seconds = poll_seconds
        self._next_poll = 0.0
        self._mtime: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def create(
        cls,
        registry: Any = None,
        logger: Any = None,
        state_file: Path | None = None,
        data_dir: Path | None = None,
    ) -> Faults:
        gauge = None
        if registry is not None:
            from prometheus_client import Gauge

            # One series per fault for the whole service: with several workers (multiprocess
            # mode) the live workers' values, maxed; a dead worker's file no longer counts.
            gauge = Gauge(
                "fault_active",
                "1 while this injected fault is on.",
                ("fault",),
                registry=registry,
                multiprocess_mode="livemax",
            )
            for name in FAULT_NAMES:
                gauge.labels(name).set(0)
        return cls(gauge, logger, state_file or default_state_file(data_dir))

    @property
    def spec(self) -> FaultSpec:
        now = time.monotonic()
        if self.state_file is not None and now >= self._next_poll:
            self._next_poll = now + self.poll_seconds
            self._reload()
        return self._spec

    def _reload(self) -> None:
        path = self.state_file
        if path is None:
            return
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        with self._lock:
            self._mtime = mtime
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as f:
                    spec = FaultSpec.model_validate_json(f.read(64 * 1024))
            except (OSError, ValueError):
                spec = FaultSpec()
            self._apply(spec, log=False)

    def _apply(self, spec: FaultSpec, log: bool) -> None:
        self._spec = spec
        on = spec.active()
        if self.gauge is not None:
            for name in FAULT_NAMES:
                self.gauge.labels(name).set(1 if name in on else 0)
        if log and self.logger is not None:
            self.logger.warning("faults_set", faults=on, spec=spec.model_dump())

    def set(self, spec: FaultSpec) -> None:
        with self._lock:
            if self.state_file is not None:
                # A fresh file (never an existing one, never through a link), then an atomic
                # rename over the state file (a rename replaces a link, it does not follow it).
                tmp = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
                tmp.unlink(missing_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                with os.fdopen(os.open(tmp, flags, 0o600), "w") as f:
                    f.write(spec.model_dump_json())
                os.replace(tmp, self.state_file)
                self._mtime = self.state_file.stat().st_mtime_ns
            self._apply(spec, log=True)

    def clear(self) -> None:
        self.set(FaultSpec())

    def close(self) -> None:
        """At shutdown (all workers stop together), remove the shared file."""
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)

    # --- the hooks ---------------------------------------------------------------------------
    def instrument_engine(self, engine: Engine) -> None:
        """Delay every SQL statement while `db_sleep_ms` is on (runs in the request's thread)."""

        def slow(*_args: Any) -> None:
            ms = self.spec.db_sleep_ms
            if ms > 0 and _in_scope():
                time.sleep(ms / 1000)

        event.listen(engine, "before_cursor_execute", slow)

    def wrap_cache(self, cache: Any, on_error: Any = None) -> Any:
        """`on_error` counts an injected outage the way a real Redis failure is counted."""
        return _FaultyCache(cache, self, on_error)


def _in_scope() -> bool:
    return context.get() is not None and not _exempt.get()


class _FaultyCache:
    """The real cache, or, during a `cache_outage`, what the RedisCache does when Redis is down:
    answer from the database, mark the request `bypass`, count an error."""

    def __init__(self, inner: Any, faults: Faults, on_error: Any = None) -> None:
        self._inner = inner
        self._faults = faults
        self.kind = inner.kind
        self.on_error = on_error

    async def get_or_load(self, key: str, field: str, loader: Any) -> bytes:
        if not self._faults.spec.cache_outage:
            return await self._inner.get_or_load(key, field, loader)
        ctx = context.get()
        if ctx is not None:
            ctx.cache = "bypass"
            ctx.cache_backend = self.kind
            ctx.extra["cache_error"] = "InjectedOutage"
        if self.on_error is not None:
            self.on_error()
        return await in_thread(loader)

    async def invalidate(self, *keys: str) -> None:
        if not self._faults.spec.cache_outage:
            await self._inner.invalidate(*keys)

    async def close(self) -> None:
        await self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FaultMiddleware:
    """Applies latency, errors and CPU burn; tags the request's log line with the faults on."""

    def __init__(self, app: Any, *, faults: Faults) -> None:
        self.app = app
        self.faults = faults
        self._spec: FaultSpec | None = None
        self._on: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        spec = self.faults.spec
        if spec is not self._spec:  # a new spec (set or reloaded): which faults it switches on
            self._spec, self._on = spec, spec.active()
        on = self._on
        if not on:
            await self.app(scope, receive, send)
            return
        ctx = context.get()
        if scope.get("path", "").startswith(EXEMPT_PREFIXES):
            token = _exempt.set(True)
            try:
                await self.app(scope, receive, send)
            finally:
                _exempt.reset(token)
            return
        if ctx is not None:
            ctx.extra["fault"] = ",".join(on)
        if spec.latency_ms or spec.jitter_ms:
            await asyncio.sleep((spec.latency_ms + random.uniform(0, spec.jitter_ms)) / 1000)
        if spec.cpu_burn_ms:
            _burn(spec.cpu_burn_ms / 1000)
        fail = spec.error_rate > 0 and random.random() < spec.error_rate
        if fail and spec.error_phase == "before":
            await self._injected_error(send, spec, ctx)
            return
        if not fail:
            await self.app(scope, receive, send)
            return

        async def swallow(message: Any) -> None:  # the answer is "lost on the way back"
            return None

        await self.app(scope, receive, swallow)
        await self._injected_error(send, spec, ctx)

    async def _injected_error(self, send: Send, spec: FaultSpec, ctx: Any) -> None:
        if ctx is not None:
            ctx.extra["injected"] = True
        await send_json(
            send,
            spec.error_status,
            {"detail": f"injected fault: deliberate {spec.error_status}", "injected": True},
        )


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        for i in range(1000):
            x ^= i * i
