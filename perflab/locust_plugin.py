"""Record every request Locust makes, from any locustfile: a plugin on Locust's `events.request`.

Locust's statistics keep percentiles in rounded buckets; the lab wants every request. Rather
than timing requests inside each locustfile (as the lab once did, twice), this module listens
to the event Locust fires for every request of every client and writes it as a raw sample with
`perflab.recorder` (one definition of the columns). So a locustfile written from Locust's
documentation records without a change:

    perflab load --host URL --locustfile mine.py --users 5    # the lab adds this plugin
    locust -f mine.py,loadtests/perflab_recorder.py --perflab-samples s.csv   # by hand

The lab's own locustfiles import it. What it adds to a Locust process:

- `--perflab-samples PATH`: where to write the samples (a distributed worker appends its pid;
  the master records nothing, its workers do). Without it nothing is recorded.
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
import os
import sys
import time
from collections.abc import Callable, Mapping
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
_host_header: str | None = None


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--perflab-samples",
        default="",
        metavar="PATH",
        help="write every request as a raw sample to this CSV file (perflab's columns)",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--perflab-host-header",
        default="",
        metavar="HOST",
        help="Host header of requests to --host (when --host is the checked address of a name)",
        include_in_web_ui=False,
    )


@events.init.add_listener
def _on_init(environment: Any, **_kw: Any) -> None:
    global _recorder, _host_header
    from locust.runners import MasterRunner, WorkerRunner

    start_parent_watchdog()  # a greenlet here (gevent patches threads): exit with the lab
    options = environment.parsed_options
    _host_header = (getattr(options, "perflab_host_header", "") or None) if options else None
    samples = getattr(options, "perflab_samples", "") if options else ""
    if not samples or isinstance(environment.runner, MasterRunner):
        return
    if isinstance(environment.runner, WorkerRunner):
        samples = f"{samples}.{os.getpid()}"  # one file per worker; the harness merges them
    _recorder = Recorder(samples)
    gevent.spawn(_flusher, _recorder)


def _flusher(recorder: Recorder) -> None:
    while True:
        gevent.sleep(FLUSH_EVERY)
        recorder.flush()


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
    if _recorder is not None:
        _recorder.flush()


@events.quitting.add_listener
def _on_quitting(**_kw: Any) -> None:
    if _recorder is not None:
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
