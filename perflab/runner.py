"""Run experiments: variants × repetitions, interleaved, saved as a run folder.

Variants run interleaved (A B, then B A on the next repetition), not all of one then all of
the other, so machine drift (thermal, other load) does not masquerade as an effect. Each
variant gets a fresh service process; its /metrics is scraped every second and its JSON log
is collected. A variant that cannot start (no Redis, say) is reported in one line and the
others still run. Ctrl-C (or a notebook's interrupt) stops the run and keeps what it measured;
so does a load that fails (the run so far is saved, then the error is shown).

`run_external` runs an experiment's traffic against a service the lab did not start (deployed
on a cluster, say): one variant, as deployed, recorded in the same run folder; its manifest
says the target was external and what could not be collected from it.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx

from perflab import profiling, prometheus, report
from perflab.auth import verify_for
from perflab.errors import LabError
from perflab.experiments import Experiment, Variant
from perflab.lab import Lab
from perflab.loadgen import (
    Endpoint,
    LoadProfile,
    LoadResult,
    check_target,
    dataset_config,
    run_load,
)
from perflab.prometheus import Prometheus
from perflab.results import Run, check_writable, log_records
from perflab.scrape import MetricsScraper, serves_metrics

__all__ = [
    "Run",
    "VariantSkipped",
    "external_target",
    "load",
    "run_experiments",
    "run_external",
    "run_variant",
    "save",
    "schedule",
    "warm_up",
]


class VariantSkipped(LabError):
    """A variant's service could not start (no Redis, say): the other variants still run."""


def schedule(exp: Experiment, repeat: int) -> Iterator[tuple[int, Variant]]:
    """(repetition, variant) in run order: A B, then B A, then A B..."""
    for rep in range(repeat):
        yield from ((rep, v) for v in (exp.variants if rep % 2 == 0 else exp.variants[::-1]))


def run_variant(
    lab: Lab,
    run: Run,
    exp: Experiment,
    variant: Variant,
    profile: LoadProfile,
    *,
    repeat: int = 0,
    dataset: dict | None = None,
    progress: bool = True,
    prometheus: Prometheus | None = None,
    profiler: bool = False,
) -> bool:
    """One repetition of one variant: a fresh service under load, its /metrics scraped and its
    log collected, all recorded in `run`. Returns whether the load was interrupted.
    With `prometheus`, it scrapes the variant's services too (labelled experiment, variant).

    `profiler=True` samples the service's processes with the lab's profiler while it runs:
    files in the run's `profiles/`, listed in its manifest (`profiling.run_profiles`).

    Raises `VariantSkipped` when the service does not start, `LabError` when the load fails.
    """
    check_writable(run.path)  # a disk that filled up since the last variant: say so now
    label = f"{exp.name}-{variant.name}-r{repeat}"
    try:
        svc = lab.service(
            exp.service_for(variant),
            label=label,
            log_dir=run.log_dir,
            profile=run.path / profiling.FOLDER if profiler else False,
            **variant.settings,
        )
    except LabError as exc:
        raise VariantSkipped(str(exc).splitlines()[0]) from None
    scraper = MetricsScraper(svc.url).start()
    watched = [svc, *svc.upstreams]
    if prometheus is not None:
        for one in watched:
            prometheus.add(
                one.url,
                experiment=exp.name,
                variant=variant.name,
                repeat=str(repeat),
                service=one.name,
                app="catalog" if one in svc.upstreams else exp.service_for(variant),
            )
    try:
        extra = traffic_config(exp, dataset or lab.ensure_data())
        if exp.warm:
            warm_up(svc.url, exp.mix, extra["products"], verify=verify_for(svc))
        if prometheus is not None:
            _wait_scraped(prometheus, run, [one.url for one in watched], label, "before the load")
        result = load(
            run,
            svc.url,
            exp.mix,
            profile,
            label=label,
            progress=progress,
            ca_file=svc.ca_file,
            extra_config=extra,
        )
        if prometheus is not None and not result.interrupted:
            _wait_scraped(prometheus, run, [one.url for one in watched], label, "after the load")
    finally:
        metrics = scraper.stop()
        svc.stop()
        if prometheus is not None:
            for one in watched:
                prometheus.remove(one.url)
        for p in svc.profiles:
            tags = {"experiment": exp.name, "variant": variant.name, "repeat": repeat}
            run.manifest.setdefault("profiles", []).append(profiling.entry(p, run.path, **tags))
    run.add_variant(
        exp.name,
        variant.name,
        result.samples,
        settings=variant.settings,
        repeat=repeat,
        env=svc.env,
        metrics=metrics,
        logs=log_records(svc.log_file),
    )
    run.add_spans(svc.span_files, experiment=exp.name, variant=variant.name, repeat=repeat)
    return result.interrupted


def traffic_config(exp: Experiment, dataset: dict | None) -> dict:
    """The ids the traffic draws from: the dataset's (`dataset_config`; none known: the
    locustfile's defaults), capped at the warm set when `exp` is warm."""
    extra = dataset_config(dataset) if dataset is not None else {}
    if exp.warm:
        extra["products"] = min(exp.warm, extra.get("products", exp.warm))
    return extra


# Threads that read the warm set: enough to keep one uvicorn worker busy, few enough that the
# machine's two cores are not all spent on the client.
WARM_THREADS = 4


def warm_up(
    url: str, mix: list[Endpoint], products: int, *, verify: ssl.SSLContext | bool = True
) -> int:
    """Read every product id 1..`products` once through each GET of `mix` that names one
    (`{product}` and no other placeholder): an experiment's `warm` set, before its load. The
    reads are not recorded; the service logs and counts them as any request. Returns how many
    were sent. An answer other than 2xx or 404 is a `LabError`: a service that cannot serve
    its warm set would be measured failing."""
    gets = [
        e
        for e in mix
        if e.method == "GET"
        and "{product}" in e.path
        and "{" not in e.path.replace("{product}", "")
    ]
    reads = [
        (url + e.path.format(product=i), e.headers) for e in gets for i in range(1, products + 1)
    ]
    if not reads:
        return 0
    with httpx.Client(verify=verify, timeout=30.0) as client:

        def read(one: tuple[str, dict[str, str]]) -> int:
            return client.get(one[0], headers=one[1]).status_code

        pool = ThreadPoolExecutor(WARM_THREADS)
        try:
            for (target, _), status in zip(reads, pool.map(read, reads), strict=True):
                if not (200 <= status < 300 or status == 404):
                    raise LabError(f"warming up: {target} answered {status}")
        finally:  # a refusal or a Ctrl-C drops the reads not yet sent
            pool.shutdown(wait=True, cancel_futures=True)
    return len(reads)


def load(
    run: Run,
    host: str,
    mix: list[Endpoint],
    profile: LoadProfile,
    *,
    label: str,
    **kw: Any,
) -> LoadResult:
    """`run_load` recording into the run's raw folder. A load that failed because that folder
    cannot be written (a full disk leaves Locust nothing to record) says so, not "no requests"."""
    try:
        return run_load(host, mix, profile, run.raw_dir, label=label, **kw)
    except LabError:
        check_writable(run.raw_dir)
        raise


def _wait_scraped(prom: Prometheus, run: Run, urls: list[str], label: str, when: str) -> None:
    """One finished scrape of each of `urls` from now on: before the load, so every series is
    known from its start; after it, so its last second is counted. A scrape that does not come
    (a starved machine) is noted in the manifest, and the run goes on."""
    if not prom.wait_scraped(urls, after=time.time()):
        gaps = run.manifest.setdefault("prometheus_gaps", [])
        gaps.append(f"{label}: no scrape of every service {when} within the wait")


def _start_prometheus(run: Run) -> Prometheus | None:
    """A Prometheus for the run when one is on PATH (`perflab.prometheus`); the manifest says
    which, or how to get one. One that will not start is reported, and the run goes on."""
    if prometheus.binary() is None:
        run.manifest["prometheus"] = prometheus.HOW_TO_GET
        return None
    try:
        prom = Prometheus(run.path / "prometheus").start()
    except LabError as exc:
        run.manifest["prometheus"] = f"did not start: {str(exc).splitlines()[0]}"
        return None
    run.manifest["prometheus"] = {"data": "prometheus/data", "queries": "promql.csv"}
    return prom


def _stop_prometheus(prom: Prometheus, run: Run) -> None:
    """Save the run's PromQL results (`promql.csv`), then stop Prometheus."""
    try:
        start = datetime.fromisoformat(run.manifest["started_at"]).timestamp()
        prom.save(run.path / "promql.csv", start, time.time())
    except (LabError, httpx.HTTPError, OSError) as exc:
        run.manifest["prometheus"] = f"queries failed: {str(exc).splitlines()[0]}"
    finally:
        prom.stop()


def save(run: Run, *, interrupted: bool = False, errors: dict[str, str] | None = None) -> Run:
    """Finish `run` (statistics, tables) and publish it (plots, report.html)."""
    run.finish(interrupted=interrupted, errors=errors)
    report.publish(run)
    return run


def run_experiments(
    experiments: list[Experiment],
    *,
    lab: Lab | None = None,
    profile: LoadProfile | None = None,
    quick: bool = False,
    repeat: int = 1,
    name: str | None = None,
    progress: bool = True,
    echo: bool = True,
    profiler: bool = False,
) -> Run:
    """Run each experiment's variants under load and save everything to one run folder.

    `profiler=True`: each variant's service runs under the lab's sampling profiler (off by
    default: it costs a little throughput, `make bench` says how much)."""
    if repeat < 1:
        raise LabError("repeat must be at least 1")
    say: Callable[[str], None] = (lambda msg: print(msg, flush=True)) if echo else (lambda _: None)
    # A results folder that cannot be written fails here, before anything starts.
    run = Run.start(name or "-".join(e.name for e in experiments), repeat=repeat, quick=quick)
    own_lab = lab is None
    lab = lab or Lab()
    prom = _start_prometheus(run)
    errors: dict[str, str] = {}
    interrupted = False
    failure: LabError | None = None
    try:
        dataset = lab.ensure_data()
        run.manifest.update(dataset=dataset, database=lab.database_url.split("://")[0])
        for exp in experiments:
            prof = profile or (exp.quick_profile if quick else exp.profile)
            prof.validate()
            run.add_experiment(exp, prof)
            for rep, variant in schedule(exp, repeat):
                key = f"{exp.name}/{variant.name}"
                if key in errors:
                    continue
                say(
                    f"[{exp.name}] {variant.name} (repeat {rep + 1}/{repeat}): "
                    f"{prof.model} model, {prof.duration:g} s"
                )
                try:
                    stopped = run_variant(
                        lab,
                        run,
                        exp,
                        variant,
                        prof,
                        repeat=rep,
                        dataset=dataset,
                        progress=progress,
                        prometheus=prom,
                        profiler=profiler,
                    )
                except VariantSkipped as exc:
                    errors[key] = str(exc)
                    say(f"  ! {key} skipped: {errors[key]}")
                    continue
                except LabError as exc:
                    errors[key] = str(exc).splitlines()[0]
                    raise
                if stopped:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: stopping services and saving what was measured so far")
    except LabError as exc:
        failure = exc
    finally:
        if own_lab:
            lab.close()
        if prom is not None:
            _stop_prometheus(prom, run)
    run.manifest["redis"] = lab.redis_source
    return _publish(run, say, interrupted=interrupted, failure=failure, errors=errors)


def _publish(
    run: Run,
    say: Callable[[str], None],
    *,
    interrupted: bool,
    failure: LabError | None,
    errors: dict[str, str] | None = None,
) -> Run:
    """Save `run` whatever happened; then re-raise a failure, naming the folder that keeps what
    was measured before it (a failure before any sample is raised as it is)."""
    save(run, interrupted=interrupted, errors=errors)
    if failure is not None:
        if run.samples.empty:
            raise failure
        raise LabError(f"{failure}\n(what was measured before is saved in {run.path})") from None
    say(f"\nSaved to {run.path}")
    return run


# What the lab cannot do to a service it did not start, said in one line before the load.
EXTERNAL_LIMITS = (
    "perflab did not start it, so it runs one variant as deployed (none started or stopped), "
    "no profiler, and no service logs or spans are collected"
)
DEFAULT_EXTERNAL_VARIANT = "external"


def external_target(url: str, *, metrics: bool | None) -> dict[str, Any]:
    """How a run folder's manifest records a target the lab did not start (`metrics`: whether
    its /metrics was found and scraped; None: not looked for)."""
    said = {True: "scraped through the URL", False: f"none at {url}/metrics", None: "not scraped"}
    return {
        "url": url,
        "external": True,
        "metrics": said[metrics],
        "not_collected": ["variants", "profiles", "logs", "spans"],
    }


def _check_reachable(url: str) -> None:
    """One line, before any run folder, when nothing answers at `url` (any HTTP status is an
    answer): a wrong port or host would otherwise be a run of connection errors."""
    try:
        httpx.get(url, timeout=10.0, verify=False)
    except httpx.HTTPError as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LabError(
            f"nothing answers at {url} ({why}): check the URL and that it is up"
        ) from None


def run_external(
    exp: Experiment,
    url: str,
    *,
    profile: LoadProfile | None = None,
    quick: bool = False,
    variant: str = DEFAULT_EXTERNAL_VARIANT,
    dataset: dict | None = None,
    allow_remote: bool = False,
    repeat: int = 1,
    progress: bool = True,
    echo: bool = True,
) -> Run:
    """Run `exp`'s traffic and load model against `url`, a service the lab did not start.

    Only loopback unless `allow_remote` (`perflab.loopback`). The service serves one variant,
    whichever is deployed: `variant` labels it (so `perflab compare` can pair it with a run of
    that variant elsewhere). `dataset` (`products`, `categories`) is the dataset the service was
    seeded with, so the ids the traffic asks for exist there. Its `/metrics` is scraped through
    the same URL when it has one; a load balancer answers that from whichever replica it picks.
    """
    if repeat < 1:
        raise LabError("repeat must be at least 1")
    check_target(url, allow_remote)  # before a run folder is made; run_load checks again
    say: Callable[[str], None] = (lambda msg: print(msg, flush=True)) if echo else (lambda _: None)
    prof = profile or (exp.quick_profile if quick else exp.profile)
    prof.validate()
    one = Experiment(
        name=exp.name,
        title=exp.title,
        question=exp.question,
        variants=[Variant(variant, {"target": url})],
        mix=exp.mix,
        profile=prof,
        quick_profile=prof,
        service="external",
        notes=exp.notes,
        warm=exp.warm,
    )
    _check_reachable(url)
    metrics = serves_metrics(url)
    target = external_target(url, metrics=metrics)
    run = Run.start(f"{exp.name}-external", repeat=repeat, quick=quick, target=target)
    run.add_experiment(one, prof, target=url)
    if dataset is not None:
        run.manifest["dataset"] = dataset
    say(f"external target {url}: {EXTERNAL_LIMITS}; {target['metrics']}")
    extra = traffic_config(exp, dataset)
    interrupted = False
    failure: LabError | None = None
    try:
        for rep in range(repeat):
            say(f"[{exp.name}] {variant} at {url} (repeat {rep + 1}/{repeat}): "
                f"{prof.model} model, {prof.duration:g} s")  # fmt: skip
            check_writable(run.path)
            if exp.warm:
                warm_up(url, exp.mix, extra["products"])
            scraper = MetricsScraper(url).start() if metrics else None
            try:
                result = load(
                    run, url, exp.mix, prof, label=f"{exp.name}-{variant}-r{rep}",
                    progress=progress, extra_config=extra, allow_remote=allow_remote,
                )  # fmt: skip
            finally:
                rows = scraper.stop() if scraper is not None else []
            run.add_variant(exp.name, variant, result.samples, settings=one.variants[0].settings,
                            repeat=rep, metrics=rows)  # fmt: skip
            if result.interrupted:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: saving what was measured so far")
    except LabError as exc:
        failure = exc
    return _publish(run, say, interrupted=interrupted, failure=failure)
