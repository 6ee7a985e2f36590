"""Record every request Locust makes, from any locustfile: a plugin on Locust's `events.request`.

Locust's statistics keep percentiles in rounded buckets; the lab wants every request. Rather
than timing requests inside each locustfile (as the lab once did, twice), this module listens
to the event Locust fires for every request of every client and writes it as a raw sample with
`perflab.recorder` (one definition of the columns). So a locustfile written from Locust's
documentation records without a change:

    perflab load --host URL --locustfile mine.py --users 5    # the lab adds this plugin
    locust -f mine.py,loadtests/perflab_recorder.py --perflab-samples s.csv   # by hand

The lab's own locustfiles import it. What it adds to a Locust process:

- `--perflab-samples PATH` (or `LOCUST_PERFLAB_SAMPLES`): where to write the samples; a
  distributed master writes there what its workers send (they keep no file). Without it
  nothing is recorded.
- Every request made through `HttpUser`'s or `FastHttpUser`'s client carries an `X-Request-ID`
  (unless it has one), a valid W3C trace id, recorded with the sample, and a W3C `traceparent`
  with that trace id: a slow request can be found in the service's log and its trace.
  `request_headers` is the one place that decides these headers.
- `--perflab-host-header NAME`: the `Host` header for requests to Locust's host, when the
  harness hands Locust the address it checked instead of a name (`perflab.loopback`).
- For locustfiles that schedule arrivals (the open model): `intended_context` tells the
  recorder when a request was meant to start, and `Alarm` wakes a greenlet on time.

Response times are Locust's own (perf_counter around the request, sub-microsecond). Imported
only inside Locust's processes (gevent): it imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gevent
from gevent.socket import wait_read
from locust import events
from locust.clients import HttpSession
from locust.contrib.fasthttp import FastHttpSession

from perflab.recorder import Recorder, new_request_id, traceparent_for
from perflab_services.common.watchdog import start_parent_watchdog

# Keys this plugin reads from a request's `context` (Locust passes it to events.request).
INTENDED = "perflab_intended"  # open model: when the request was meant to start (epoch s)
REQUEST_ID = "perflab_request_id"  # the X-Request-ID it was sent with
NOT_SENT = "perflab_not_sent"  # an event about a request that never left (not a sample)

FLUSH_EVERY = 0.5  # seconds; what an interrupted run can lose at most

_recorder: Recorder | None = None
_outbox: _Outbox | None = None  # a distributed worker's: its samples go to the master
log = logging.getLogger("perflab.recorder")
_host_header: str | None = None
# `--perflab-samples` from the environment, as Locust reads its own options (LOCUST_HOST...): how
# a container's master is told where its volume keeps every sample (deploy/compose.yaml, k8s/).
SAMPLES_ENV = "LOCUST_PERFLAB_SAMPLES"


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--perflab-samples",
        default="",
        metavar="PATH",
        help="write every request as a raw sample to this CSV file (perflab's columns)",
        include_in_web_ui=False,
        env_var=SAMPLES_ENV,
    )
    parser.add_argument(
        "--perflab-host-header",
        default="",
        metavar="HOST",
        help="Host header of requests to --host (when --host is the checked address of a name)",
        include_in_web_ui=False,
        env_var="LOCUST_PERFLAB_HOST_HEADER",
    )


@events.init.add_listener
def _on_init(environment: Any, **_kw: Any) -> None:
    global _recorder, _host_header, _outbox
    from locust.runners import MasterRunner, WorkerRunner

    start_parent_watchdog()  # a greenlet here (gevent patches threads): exit with the lab
    options = environment.parsed_options
    _host_header = (getattr(options, "perflab_host_header", "") or None) if options else None
    samples = getattr(options, "perflab_samples", "") if options else ""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        # A worker may run on another machine: it keeps no file, it sends its samples to the
        # master over Locust's own connection (`_Outbox`).
        _recorder = Recorder(None)
        _outbox = _Outbox(runner, _recorder)
        runner.register_message(STOP_MESSAGE, _outbox.on_stop, concurrent=True)
        gevent.spawn(_outbox.run)
        return
    if isinstance(runner, MasterRunner):  # records nothing itself: writes what workers send
        _recorder = Recorder(samples or None)
        inbox = _Inbox(environment, _recorder, samples)
        runner.register_message(SAMPLES_MESSAGE, inbox.on_samples)
        runner.register_message(STOPPED_MESSAGE, inbox.on_stopped)
        environment.events.test_stopping.add_listener(inbox.on_test_stopping)
        environment.events.quitting.add_listener(inbox.on_quitting)
        return
    if not samples:
        return
    _recorder = Recorder(samples)
    gevent.spawn(_flusher, _recorder)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    """A worker learns the options of each run from the master (the Host header among them)."""
    global _host_header
    header = getattr(environment.parsed_options, "perflab_host_header", None)
    if header:
        _host_header = str(header)


def _flusher(recorder: Recorder) -> None:
    while True:
        gevent.sleep(FLUSH_EVERY)
        recorder.flush()


# --- distributed: samples from the workers to the master over Locust's messaging ----------------
SAMPLES_MESSAGE = "perflab_samples"  # worker -> master: {"worker", "rows", "seq"}
STOP_MESSAGE = "perflab_stop"  # master -> workers: stop now and send every last sample
STOPPED_MESSAGE = "perflab_stopped"  # worker -> master: {"worker", "sent", "dropped"}
BATCH = 2000  # rows per message: a few hundred kB
MAX_PENDING = 200_000  # rows a worker buffers at most (a master that cannot keep up): then drops
STOP_GRACE = 15.0  # seconds the master waits for its workers' last samples, after stop_timeout


class _Outbox:
    """A worker's samples, sent to the master in batches every `FLUSH_EVERY` s (sooner when a
    batch fills). Latency is measured here, on the worker's own clock: only finished samples
    travel. Memory is bounded: past `MAX_PENDING` rows the oldest are dropped and counted."""

    def __init__(self, runner: Any, recorder: Recorder) -> None:
        self.runner = runner
        self.recorder = recorder
        self.sent = 0
        self.dropped = 0
        self.seq = 0

    def send(self) -> None:
        rows = self.recorder.take()
        if len(rows) > MAX_PENDING:
            self.dropped += len(rows) - MAX_PENDING
            rows = rows[-MAX_PENDING:]
        for i in range(0, len(rows), BATCH):
            batch = rows[i : i + BATCH]
            self.seq += 1
            data = {"worker": self.recorder.worker, "rows": batch, "seq": self.seq}
            self.runner.send_message(SAMPLES_MESSAGE, data)
            self.sent += len(batch)

    def run(self) -> None:
        while True:
            gevent.sleep(FLUSH_EVERY)
            self.send()

    def on_stop(self, environment: Any, msg: Any, **_kw: Any) -> None:
        """The master's run is ending: stop the users (Locust's own stop: in-flight requests
        finish within its stop timeout), send every remaining sample and Locust's statistics,
        then say how many samples were sent, so the master's count and Locust's agree."""
        environment.runner.stop()
        self.send()
        with contextlib.suppress(Exception):  # Locust's own report, now rather than in 3 s
            environment.runner._send_stats()
        data = {"worker": self.recorder.worker, "sent": self.sent, "dropped": self.dropped}
        environment.runner.send_message(STOPPED_MESSAGE, data)


class _Inbox:
    """The master's side: every worker's samples into the one samples file, and per worker
    (Locust's client id) what it sent; written beside the samples as `*.workers.json`, with
    the workers that went silent (died, or lost the network) named."""

    def __init__(self, environment: Any, recorder: Recorder, samples: str) -> None:
        self.environment = environment
        self.recorder = recorder
        self.report = Path(samples).with_suffix(".workers.json") if samples else None
        self.workers: dict[str, dict[str, Any]] = {}
        self.stopping = False

    def _entry(self, client_id: str, name: str) -> dict[str, Any]:
        entry = self.workers.setdefault(
            client_id,
            {"worker": name, "client_id": client_id, "samples": 0, "first": time.time(),
             "last": None, "stopped": False, "sent": None, "dropped": 0},
        )  # fmt: skip
        entry["last"] = time.time()
        return entry

    def on_samples(self, environment: Any, msg: Any, **_kw: Any) -> None:
        rows = msg.data["rows"]
        self.recorder.write(rows)
        self._entry(msg.node_id, msg.data["worker"])["samples"] += len(rows)

    def on_stopped(self, environment: Any, msg: Any, **_kw: Any) -> None:
        entry = self._entry(msg.node_id, msg.data["worker"])
        entry.update(stopped=True, sent=msg.data["sent"], dropped=msg.data["dropped"])

    def on_test_stopping(self, environment: Any, **_kw: Any) -> None:
        """Before Locust's master stops (or quits, when the run time is up): ask every worker
        for its last samples and wait for them (or for the worker to be declared missing)."""
        from locust.runners import STATE_MISSING

        runner = environment.runner
        if self.stopping:
            return
        self.stopping = True
        for entry in self.workers.values():
            entry["stopped"] = False
        clients = [c for c in runner.clients.all if c.state != STATE_MISSING]
        for client in clients:
            runner.send_message(STOP_MESSAGE, None, client_id=client.id)
        deadline = time.monotonic() + float(environment.stop_timeout or 0) + STOP_GRACE
        while time.monotonic() < deadline:
            done = all(
                self.workers.get(c.id, {}).get("stopped") or c.state == STATE_MISSING
                for c in clients
            )
            if done:
                break
            gevent.sleep(0.05)
        self.write_report()
        self.stopping = False

    def on_quitting(self, **_kw: Any) -> None:
        self.write_report()

    def write_report(self) -> None:
        now = time.time()
        for entry in self.workers.values():
            entry["silent"] = not entry["stopped"]
            if entry["silent"]:
                log.warning(
                    "perflab: worker %s (%s) went silent %.1f s ago after sending %d samples: "
                    "the run keeps what arrived",
                    entry["worker"], entry["client_id"], now - (entry["last"] or now),
                    entry["samples"],
                )  # fmt: skip
        self.recorder.flush()
        if self.report is None:
            return
        with contextlib.suppress(OSError):
            self.report.write_text(json.dumps(list(self.workers.values()), indent=1) + "\n")


@events.request.add_listener
def _on_request(
    request_type: str,
    name: str,
    response_time: float | None,
    response_length: int,
    response: Any = None,
    context: Mapping[str, Any] | None = None,
    exception: BaseException | None = None,
    start_time: float | None = None,
    **_kw: Any,
) -> None:
    if _recorder is None:
        return
    ctx = context or {}
    if ctx.get(NOT_SENT):
        return
    service_ms = float(response_time or 0.0)
    t_start = start_time if start_time is not None else time.time() - service_ms / 1000
    headers = getattr(response, "headers", None) or {}
    _recorder.record(
        t_intended=ctx.get(INTENDED, t_start),
        t_start=t_start,
        service_ms=service_ms,
        status=int(getattr(response, "status_code", 0) or 0),
        ok=exception is None,
        endpoint=name,
        x_cache=headers.get("x-cache"),
        x_db_queries=headers.get("x-db-queries"),
        request_id=ctx.get(REQUEST_ID) or headers.get("x-request-id") or "",
    )


@events.test_stop.add_listener
def _on_test_stop(**_kw: Any) -> None:
    if _outbox is not None:
        _outbox.send()
    elif _recorder is not None:
        _recorder.flush()


@events.quitting.add_listener
def _on_quitting(**_kw: Any) -> None:
    if _outbox is not None:
        with contextlib.suppress(Exception):  # the master may be gone already
            _outbox.send()
    elif _recorder is not None:
        _recorder.close()


# --- what every request carries ---------------------------------------------------------------
def request_headers(headers: Mapping[str, str] | None, url: str) -> tuple[dict[str, str], str]:
    """The headers a request is sent with, and its request id: the caller's, plus an
    `X-Request-ID` (kept if the caller set one) and, for a request to Locust's host when the
    harness pinned its address, the `Host` header of the name it was given."""
    out = dict(headers) if headers else {}
    lower = {k.lower(): k for k in out}
    rid = out[lower["x-request-id"]] if "x-request-id" in lower else None
    if rid is None:
        rid = new_request_id()
        out["X-Request-ID"] = rid
    if "traceparent" not in lower and (tp := traceparent_for(str(rid))):
        out["traceparent"] = tp
    if _host_header and "host" not in lower and "://" not in url:
        out["Host"] = _host_header
    return out, str(rid)


def _positions(request: Callable[..., Any]) -> tuple[int | None, int | None]:
    """Where `headers` and `context` sit among the positional arguments after (method, url)."""
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = inspect.signature(request).parameters.values()
    names = [p.name for p in params if p.kind == positional][3:]  # after self, method, url
    return (
        names.index("headers") if "headers" in names else None,
        names.index("context") if "context" in names else None,
    )


def _identify_requests(session_class: Any) -> None:
    """Wrap a Locust client's `request` (every get/post/... goes through it) to send
    `request_headers` and pass the request id on to the recorder in the request's context."""
    original = session_class.request
    if getattr(original, "_perflab", False):
        return
    at_headers, at_context = _positions(original)

    @functools.wraps(original)
    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        given = list(args)
        if at_headers is not None and len(given) > at_headers:
            given[at_headers], rid = request_headers(given[at_headers], str(url))
        else:
            kwargs["headers"], rid = request_headers(kwargs.get("headers"), str(url))
        if at_context is not None and len(given) > at_context:
            given[at_context] = {**(given[at_context] or {}), REQUEST_ID: rid}
        else:
            kwargs["context"] = {**(kwargs.get("context") or {}), REQUEST_ID: rid}
        return original(self, method, url, *given, **kwargs)

    request._perflab = True  # type: ignore[attr-defined]
    session_class.request = request


_identify_requests(HttpSession)
_identify_requests(FastHttpSession)


# --- the open model: when a request was meant to start, and waking up on time ----------------
def intended_context(intended_pc: float) -> dict[str, float]:
    """The request `context` that tells the recorder when the request was meant to start
    (`intended_pc` on the perf_counter clock; converted to epoch seconds now, so the gap to
    Locust's own start time is measured on one clock)."""
    return {INTENDED: time.time() - (time.perf_counter() - intended_pc)}


class Alarm:
    """Sleep a greenlet until a perf_counter instant, to within tens of microseconds.

    `gevent.sleep` is libev's timer, and libev waits in `epoll_wait`, whose timeout is whole
    milliseconds rounded up: a greenlet asked to wake at t wakes at t + 0.5 ms on average (up
    to 1 ms, more on a busy machine). In an open model that lateness is added to every
    request's latency (measured from the intended start), so a 5 ms service read 6 ms. A Linux
    timerfd armed at an absolute instant is a file descriptor that becomes readable on time
    (a high-resolution kernel timer); the greenlet waits on it as on any socket. Waking up
    still takes tens of microseconds (kernel, libev, the switch to the greenlet), so the alarm
    rings `EARLY` before the instant and the greenlet yields to the others until the instant
    (at 100 requests/s that costs about 2% of a core). Elsewhere, or if the kernel refuses a
    timerfd, it falls back to `gevent.sleep`, and the lateness shows in the samples'
    `lateness_ms`.
    """

    EARLY = 0.0002  # seconds

    def __init__(self) -> None:
        self.fd: int | None = _timerfd()

    def sleep_until(self, instant: float) -> None:
        wake = instant - self.EARLY
        delay = wake - time.perf_counter()
        if delay > 0:
            if self.fd is not None and _arm(self.fd, wake):
                wait_read(self.fd)
                with contextlib.suppress(BlockingIOError):
                    os.read(self.fd, 8)
            else:
                gevent.sleep(delay)
        while time.perf_counter() < instant:
            gevent.sleep(0)  # the last stretch: let other users run meanwhile

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_CLOCK_MONOTONIC, _TFD_TIMER_ABSTIME = 1, 1
_TFD_FLAGS = os.O_NONBLOCK | os.O_CLOEXEC  # TFD_NONBLOCK, TFD_CLOEXEC share these values
_libc: Any = None
if sys.platform.startswith("linux") and time.get_clock_info("perf_counter").implementation == (
    "clock_gettime(CLOCK_MONOTONIC)"
):
    with contextlib.suppress(OSError, AttributeError):
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.timerfd_create  # noqa: B018  (present in glibc and musl; absent: no timerfd)


def _timerfd() -> int | None:
    if _libc is None:
        return None
    fd = _libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_FLAGS)
    return fd if fd >= 0 else None


def _arm(fd: int, instant: float) -> bool:
    sec = int(instant)
    spec = _Itimerspec(_Timespec(0, 0), _Timespec(sec, int((instant - sec) * 1e9)))
    return _libc.timerfd_settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) == 0
