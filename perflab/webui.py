"""Locust's web UI on one service variant, with every request recorded as in a headless run.

```
with Lab() as lab, webui.open(lab, "caching/redis") as ui:
    print(ui.url)   # start, stop, reshape the swarm from the browser
    ui.wait()       # until Ctrl-C (or the notebook's interrupt button)
ui.run.summary      # the session, saved and analysed like any run
```
The UI is for exploring: how does p95 move when I add users? The lab starts the variant through
`Lab`, then Locust (`loadtests/lab.py`, with the experiment's traffic mix and the dataset's
shape, its command line built by `perflab.loadgen.locust_command` as for headless runs) as a
subprocess; Locust is never imported here, its gevent monkey-patching hangs Jupyter kernels.
The users, spawn rate and host are prefilled in the page from the experiment's profile, and the
lab locustfile's own options (the mix, an arrival rate for the open model, think time...) are
fields of the same form, so any of them can be changed between swarms. When the session ends,
Locust (stopped as on Ctrl-C, so it writes its HTML report) and the service are stopped and the
recorded samples are saved as a run folder (summary, plots, report.html).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from perflab import experiments
from perflab.errors import LabError
from perflab.experiments import Experiment, Variant
from perflab.lab import Lab
from perflab.loadgen import (
    LAB_LOCUSTFILE,
    LoadProfile,
    LocustSpec,
    dataset_config,
    lab_options,
    read_samples,
    start_locust,
)
from perflab.procs import ManagedProcess, free_port, http_ok, wait_until
from perflab.results import Run, log_records
from perflab.scrape import MetricsScraper
from perflab.services import ServiceHandle

UI_STARTUP_TIMEOUT = 60.0


def resolve(name: str) -> tuple[Experiment, Variant]:
    """`caching/redis` -> that variant; `caching` -> its first variant that is not the baseline.

    The baseline is the "before" of an experiment; the UI is mostly wanted for the "after".
    """
    exp_name, _, variant_name = name.partition("/")
    if not exp_name or "/" in variant_name or (name.endswith("/") and not variant_name):
        raise LabError(
            f"{name!r} is not EXPERIMENT or EXPERIMENT/VARIANT (e.g. caching/redis); "
            f"experiments: {', '.join(experiments.EXPERIMENTS)}"
        )
    exp = experiments.get(exp_name)
    if variant_name:
        return exp, exp.variant(variant_name)
    return exp, exp.variants[1] if len(exp.variants) > 1 else exp.variants[0]


@dataclass
class WebUI:
    """A running Locust web UI on one service variant. `stop()` saves the session as a run."""

    experiment: Experiment
    variant: Variant
    url: str
    service: ServiceHandle
    locust: ManagedProcess = field(repr=False)
    session: Run = field(repr=False)  # the run folder being written
    samples_path: Path = field(repr=False)
    scraper: MetricsScraper | None = field(repr=False, default=None)
    run: Run | None = field(repr=False, default=None)  # the saved run once stopped
    stopped: bool = field(repr=False, default=False)

    @property
    def run_dir(self) -> Path:
        return self.session.path

    @property
    def name(self) -> str:
        return f"{self.experiment.name}/{self.variant.name}"

    @property
    def running(self) -> bool:
        return self.locust.alive() and self.service.running

    def samples(self) -> pd.DataFrame:
        """Every request recorded so far (flushed twice a second by the locustfile)."""
        return read_samples(self.samples_path)

    def wait(self) -> None:
        """Block until Ctrl-C / the kernel's interrupt, or until Locust or the service exits."""
        with contextlib.suppress(KeyboardInterrupt):
            while self.running:
                time.sleep(0.5)

    def stop(self) -> Run | None:
        """Stop Locust, then the service; save what was recorded. Returns the `Run` (or None
        when nothing was recorded). Safe to call twice."""
        if self.stopped:
            return self.run
        self.stopped = True
        self.locust.stop(timeout=8, sig=signal.SIGINT)  # as Ctrl-C: Locust saves its report
        metric_rows = self.scraper.stop() if self.scraper is not None else []
        self.scraper = None
        self.service.stop()
        self.run = self._save(metric_rows)
        return self.run

    def _save(self, metric_rows: list[dict]) -> Run | None:
        from perflab.runner import save

        samples = self.samples()
        if samples.empty:
            return None
        self.session.add_variant(
            self.experiment.name,
            self.variant.name,
            samples,
            settings=self.variant.settings,
            metrics=metric_rows,
            logs=log_records(self.service.log_file),
        )
        return save(self.session)

    def _repr_html_(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f'Locust web UI for <b>{self.name}</b> ({state}): <a href="{self.url}" '
            f'target="_blank">{self.url}</a>; service at {self.service.url}'
        )

    def __enter__(self) -> WebUI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # a notebook that dropped the handle: still stop the children
        with contextlib.suppress(Exception):
            if self.locust.alive():
                self.locust.stop(timeout=3)


def start(lab: Lab, name: str, *, port: int | None = None, users: int | None = None) -> WebUI:
    """Start the variant `name` (see `resolve`) and Locust's web UI on it; returns the handle."""
    exp, variant = resolve(name)
    prof = LoadProfile(**{**asdict(exp.profile), "model": "closed", "rate": None, "workers": 1})
    if users is not None:
        prof.users = users
    prof.validate()
    label = f"ui-{exp.name}-{variant.name}"
    session = Run.start(label, mode="webui")
    raw_dir = session.raw_dir
    raw_dir.mkdir(parents=True, exist_ok=True)
    try:
        dataset = lab.ensure_data()
        svc = lab.service(
            exp.service_for(variant), label=label, log_dir=session.log_dir, **variant.settings
        )
    except BaseException:
        shutil.rmtree(session.path, ignore_errors=True)
        raise
    session.manifest["dataset"] = dataset
    # The UI's one variant is its own baseline; the swarm is shaped in the page: no warm-up.
    session.add_experiment(
        exp.with_variants([variant.name]), LoadProfile(**{**asdict(prof), "warmup": 0.0})
    )
    samples_path = raw_dir / f"samples-{label}.csv"
    port = port or free_port()
    try:
        # The page lets anyone type another host: the locustfile then refuses non-loopback ones.
        extra = {**dataset_config(dataset), "loopback_only": True}
        options = lab_options(exp.name, prof, raw_dir / f"mix-{label}.json", extra)
        spec = LocustSpec(
            LAB_LOCUSTFILE,
            svc.url,
            users=prof.users,
            spawn_rate=prof.spawn_rate or prof.users,
            web_port=port,
            files=raw_dir / f"locust-{label}",
            samples=samples_path,
            options=options.argv(),
        )
        (proc,) = start_locust(spec, raw_dir / f"locust-{label}.log")
        url = f"http://127.0.0.1:{port}"
        wait_until(http_ok(url + "/"), proc, UI_STARTUP_TIMEOUT, "serving its web UI")
    except BaseException:
        svc.stop()
        raise
    scraper = MetricsScraper(svc.url).start()
    return WebUI(
        experiment=exp,
        variant=variant,
        url=url,
        service=svc,
        locust=proc,
        session=session,
        samples_path=samples_path,
        scraper=scraper,
    )


@contextlib.contextmanager
def open(lab: Lab, name: str, **kw: object) -> Iterator[WebUI]:
    """`with webui.open(lab, "caching/redis") as ui:` the UI runs inside the block; leaving it
    stops Locust and the service and saves the session (`ui.run`)."""
    ui = start(lab, name, **kw)  # type: ignore[arg-type]
    try:
        yield ui
    finally:
        ui.stop()
