"""The lab's locustfile: a configurable traffic mix under a closed or an open load model.

Its settings are Locust custom options (the list is `perflab.traffic.LabOptions`), so the
harness, your command line and Locust's web UI set them the same way:

    locust -f loadtests/lab.py -H http://127.0.0.1:8000 --mix caching --users 8
    locust -f loadtests/lab.py -H http://127.0.0.1:8000 --mix /products/{product} \\
        --arrival-rate 50 --arrivals poisson --users 20 --perflab-samples samples.csv

- closed model (`--arrival-rate 0`, the default): each user sends its next request
  `--think-time` after the last answer, so the load slows down when the service does;
- open model (`--arrival-rate R`): requests arrive R per second whatever the service does
  (users only supply concurrency); latency counts from each request's intended start, so
  coordinated omission is corrected, as wrk2 does.

Without `--mix` it requests /healthz and says so. Every request is recorded by the recorder
plugin (`perflab.locust_plugin`) when `--perflab-samples` is given; the web UI lets you change
the mix and the model between swarms.
"""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, events, task
from locust.exception import StopUser

from perflab import experiments
from perflab.errors import LabError
from perflab.locust_plugin import NOT_SENT, Alarm, intended_context
from perflab.loopback import is_loopback
from perflab.recorder import Schedule
from perflab.traffic import LabOptions, Traffic

DEFAULT_MIX = "/healthz"
log = logging.getLogger("perflab.lab")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    for f in fields(LabOptions):
        flag, help_text = LabOptions.flag(f.name), f.metadata["help"]
        kw: dict[str, Any] = {
            "help": help_text,
            "include_in_web_ui": f.metadata["web_ui"],
            "env_var": LabOptions.env_var(f.name),
        }
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", **kw)
            continue
        choices = ["constant", "poisson"] if f.name == "arrivals" else None
        parser.add_argument(flag, default=str(f.default), choices=choices, **kw)


@dataclass
class _Load:
    """What this process sends, made from the options at each test start (the web UI may have
    changed them since the last one)."""

    options: LabOptions
    traffic: Traffic
    schedule: Schedule | None
    think: tuple[float, float]
    stopping: bool = False

    def wait(self) -> float:
        low, high = self.think
        return random.uniform(low, high) if high > 0 else 0.0


_load: _Load | None = None


def _read_options(environment: Any) -> LabOptions:
    opts = LabOptions.parse(vars(environment.parsed_options or {}))
    if not opts.mix:
        if _load is None:  # say it once, at start-up
            log.warning(
                "no --mix given: requesting %s only (--mix takes an experiment such as "
                "caching, a path, JSON or @file.json)",
                DEFAULT_MIX,
            )
        opts.mix = DEFAULT_MIX
    experiments.mix(opts.mix)  # a bad mix fails here, with its reason
    return opts


def _build(environment: Any, opts: LabOptions) -> _Load:
    runner = environment.runner
    workers = max(1, int(getattr(environment.parsed_options, "lab_workers", 1) or 1))
    index = int(getattr(runner, "worker_index", 0) or 0) if workers > 1 else 0
    # distinct (still reproducible) traffic per distributed worker
    seed: int | str = opts.seed if workers == 1 else f"{opts.seed}-{index}"
    traffic = Traffic(experiments.mix(opts.mix), opts.products, opts.categories, opts.zipf_s, seed)
    schedule = None
    if opts.arrival_rate > 0:
        # Each of N workers takes rate/N. Constant arrivals are staggered by index/rate (so
        # merged they are evenly spaced, not in bursts of N); Poisson streams get distinct seeds.
        schedule = Schedule(
            opts.arrival_rate / workers,
            opts.arrivals == "poisson",
            opts.seed * 1000 + index,
            offset=index / opts.arrival_rate if workers > 1 else None,
        )
    LabUser.network_timeout = LabUser.connection_timeout = opts.request_timeout
    if opts.ca_file:  # https with the lab's certificate: verify it
        LabUser.insecure = False
        LabUser.ssl_context_factory = staticmethod(  # type: ignore[assignment]
            lambda *_a, **_k: gevent.ssl.create_default_context(cafile=opts.ca_file)
        )
    return _Load(opts, traffic, schedule, (0.0, 0.0) if schedule else opts.think_range())


@events.init.add_listener
def _on_init(environment: Any, **_kw: Any) -> None:
    """Options given on the command line are checked before anything starts."""
    global _load
    try:
        _load = _build(environment, _read_options(environment))
    except LabError as exc:
        print(f"loadtests/lab.py: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_kw: Any) -> None:
    global _load
    from locust.runners import MasterRunner

    runner = environment.runner
    if isinstance(runner, MasterRunner) and environment.parsed_options is not None:
        # sent to the workers with this start: each takes 1/N of the arrival rate
        options = environment.parsed_options
        options.lab_workers = max(1, runner.worker_count)
        mix = str(getattr(options, "mix", "") or "")
        if mix.startswith("@"):  # a worker on another machine cannot read the master's file
            with contextlib.suppress(OSError):
                options.mix = Path(mix[1:]).expanduser().read_text(encoding="utf-8").strip()
        return
    try:
        _load = _build(environment, _read_options(environment))
    except LabError as exc:  # a bad value typed in the web UI: keep what ran before
        log.error("perflab: %s; this run keeps the previous settings", exc)
        if _load is not None:
            _load.stopping = False


@events.test_stopping.add_listener
def _on_stopping(**_kw: Any) -> None:
    """Open model: users claim arrival slots ahead of time (80 users at 50/s hold the next 1.6 s
    of slots); once the run time is up, a user waking for a slot must not send it."""
    if _load is not None:
        _load.stopping = True


class LabUser(FastHttpUser):
    """One simulated client. In the open model, users only supply concurrency: *when* each
    request starts is set by the shared schedule, not by how fast the last one came back."""

    max_retries = 0

    def wait_time(self) -> float:
        return _load.wait() if _load is not None else 0.0

    def on_start(self) -> None:
        self.alarm = Alarm()
        if _load is not None and _load.options.loopback_only and not is_loopback(self.host):
            # The web UI lets anyone type a host: keep it to this machine, as `perflab load` does.
            self.environment.events.request.fire(
                request_type="REFUSED",
                name=str(self.host),
                response_time=0,
                response_length=0,
                response=None,
                context={NOT_SENT: True},
                exception=RuntimeError(
                    f"{self.host} is not a loopback address: perflab loads only this machine"
                ),
            )
            raise StopUser

    def on_stop(self) -> None:
        self.alarm.close()

    @task
    def one_request(self) -> None:
        load = _load
        if load is None:
            return
        entry = load.traffic.pick()
        context: dict[str, float] = {}
        if load.schedule is not None:
            intended = load.schedule.next()
            self.alarm.sleep_until(intended)
            if load.stopping:
                return
            context = intended_context(intended)
        self.client.request(
            entry.method,
            load.traffic.fill(entry.path),
            name=entry.name,
            headers=entry.headers or None,
            json=entry.json,
            context=context,
        )
