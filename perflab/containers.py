"""The catalog in a container, measured against the bare one the lab starts.

Why this module: "what does a container cost?" is a question the lab can answer with its own
machinery, not a claim. It finds a container engine that works here, builds the image from
`deploy/Dockerfile` (the repository root as context), runs the catalog in it on the same
dataset with compose's CPU and memory limits, and loads it and the bare catalog with the same
read, interleaved, through the lab's load runner, recorder and statistics (`perflab.runner`,
`perflab.stats`): one `Run` folder, with CIs, like every other comparison.

Why one function builds every command (`engine_argv`): everything this module asks docker or
podman to do is an argv it builds there, so unit tests check the command lines without an
engine, and docker and podman differ in one place (podman reads the ignore file only when told).

Why the engine must answer `<engine> info`: a `docker` client without a daemon (this project's
development machine has one) is on PATH but cannot build or run anything; `find_engine` says so
in one line instead.

Why `with` blocks remove what they made: a container is not a child process of the lab (the
engine's daemon runs it), so `perflab.procs`' death signal cannot reach it. The containers and
the volume this module creates are removed when their `with` block ends, on an error or Ctrl-C
too. A lab killed with SIGKILL leaves them behind: they carry the label `perflab.owner`
(`docker ps -a --filter label=perflab.owner`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd

from perflab import paths, stats
from perflab.errors import LabError
from perflab.experiments import Experiment, Variant
from perflab.lab import service_env
from perflab.procs import free_port, http_ok, spawn, wait_until
from perflab.traffic import Endpoint, LoadProfile

if TYPE_CHECKING:
    from perflab.lab import Lab
    from perflab.results import Run

ENGINES = ("docker", "podman")
IMAGE = "perflab:latest"
DOCKERFILE = Path("deploy") / "Dockerfile"  # relative to the build context, the repository
# The catalog's and the seed job's limits in deploy/compose.yaml (a test checks they agree).
CATALOG_LIMITS = {"cpus": "1.0", "memory": "512m"}
SEED_LIMITS = {"cpus": "1.0", "memory": "1g"}
# What compose's `x-perflab` block sets for every container of the image.
HARDENING = (
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--security-opt",
    "no-new-privileges:true",
    "--cap-drop",
    "ALL",
)
OWNER_LABEL = "perflab.owner"
CONTAINER_PORT = 8000  # deploy/entrypoint.py's PORT
# The dataset lives in a volume on the image's /data (the user's home, owned by it): the seed
# job writes it there and each catalog container reads it; secrets beside it, as compose does.
DATA_MOUNT = "/data"
CONTAINER_ENV = {
    "DATABASE_URL": f"sqlite:///{DATA_MOUNT}/catalog.sqlite3",
    "CATALOG_SECRETS_DIR": f"{DATA_MOUNT}/secrets",
}
# The read both catalogs serve: a product page, on the optimized queries, no cache (a cache hit
# would measure the cache, not the container), no tracing (the lab traces its own services by
# default; a container does not).
SETTINGS: dict[str, object] = {"queries": "optimized", "cache": "none", "tracing": "off"}
MIX = [Endpoint("GET /products/{id}", "/products/{product}")]
EXPERIMENT = "container"
BARE, CONTAINED = "bare", "container"

Step = Literal[
    "info",
    "inspect-base",
    "pull-base",
    "build",
    "volume",
    "seed",
    "catalog",
    "once",
    "remove",
    "remove-volume",
    "remove-image",
    "owned-containers",
    "owned-volumes",
]


@dataclass(frozen=True)
class Engine:
    """A container engine that answered `info`: its name (docker or podman) and its path."""

    name: str
    path: str


@dataclass
class Spec:
    """One containerized catalog: the image, the names of what it creates, where it listens.

    `Spec.new` picks unique names and a free loopback port; the defaults suit `info` and the
    image steps."""

    image: str = IMAGE
    context: Path | None = paths.CHECKOUT
    container: str = "perflab-catalog"
    volume: str = "perflab-data"
    port: int = 0
    size: str = "small"
    seed: int = 42
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(
        cls,
        *,
        size: str = "small",
        seed: int = 42,
        settings: Mapping[str, object] | None = None,
        image: str = IMAGE,
        context: Path | None = paths.CHECKOUT,
    ) -> Spec:
        merged = {**SETTINGS, **(settings or {})}
        if merged.get("cache") == "redis":
            raise LabError("the containerized catalog runs without Redis: use cache none or memory")
        tag = secrets.token_hex(4)
        return cls(
            image=image,
            context=context,
            container=f"perflab-catalog-{tag}",
            volume=f"perflab-data-{tag}",
            port=free_port(),
            size=size,
            seed=seed,
            env={**service_env("catalog", merged), **CONTAINER_ENV},
        )

    @property
    def seed_container(self) -> str:
        return f"{self.container}-seed"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def base_image(dockerfile: Path | None = None) -> str:
    """The image the Dockerfile builds from (`python:<PYTHON_VERSION>-slim`)."""
    path = dockerfile or (paths.ROOT / DOCKERFILE)
    found = re.search(r"ARG PYTHON_VERSION=(\S+)", path.read_text())
    if not found:
        raise LabError(f"{path} names no PYTHON_VERSION")
    return f"python:{found.group(1)}-slim"


def _limits(limits: Mapping[str, str]) -> list[str]:
    return ["--cpus", limits["cpus"], "--memory", limits["memory"]]


def _env(env: Mapping[str, str]) -> list[str]:
    return [arg for key, value in sorted(env.items()) for arg in ("-e", f"{key}={value}")]


def engine_argv(
    engine: Engine,
    step: Step,
    spec: Spec | None = None,
    *,
    args: Sequence[str] = (),
    entrypoint: str | None = None,
) -> list[str]:
    """The command line of one `step` (the only place this module builds one).

    `once`: run the image once with `args` (and `entrypoint`), removed when it exits.
    """
    spec = spec or Spec()
    exe = engine.path
    label = ["--label", f"{OWNER_LABEL}={os.getpid()}"]
    volume = ["-v", f"{spec.volume}:{DATA_MOUNT}"]
    if step == "info":
        return [exe, "info"]
    if step in ("inspect-base", "pull-base"):
        verb = ["image", "inspect"] if step == "inspect-base" else ["pull"]
        return [exe, *verb, base_image(_context(spec) / DOCKERFILE)]
    if step == "build":
        root = _context(spec)
        dockerfile = root / DOCKERFILE
        # BuildKit reads <Dockerfile>.dockerignore by itself; podman only when told.
        ignore = ["--ignorefile", f"{dockerfile}.dockerignore"] if engine.name == "podman" else []
        return [exe, "build", "-f", str(dockerfile), *ignore, "-t", spec.image, str(root)]
    if step == "volume":
        return [exe, "volume", "create", *label, spec.volume]
    if step == "seed":
        return [
            exe, "run", "--rm", "--name", spec.seed_container, *label,
            *_limits(SEED_LIMITS), *HARDENING, *volume, *_env(CONTAINER_ENV),
            spec.image, "seed", "--size", spec.size, "--seed", str(spec.seed),
        ]  # fmt: skip
    if step == "catalog":
        return [
            exe, "run", "--name", spec.container, *label,
            *_limits(CATALOG_LIMITS), *HARDENING, *volume,
            "-p", f"127.0.0.1:{spec.port}:{CONTAINER_PORT}", *_env(spec.env),
            spec.image, "catalog",
        ]  # fmt: skip
    if step == "once":
        entry = ["--entrypoint", entrypoint] if entrypoint else []
        return [exe, "run", "--rm", *entry, spec.image, *args]
    if step == "remove":  # what is already gone is no error to podman's --ignore (docker: rc 1)
        ignore = ["--ignore"] if engine.name == "podman" else []
        return [exe, "rm", "-f", *ignore, spec.container, spec.seed_container]
    if step == "remove-volume":
        return [exe, "volume", "rm", "-f", spec.volume]
    if step == "remove-image":
        return [exe, "image", "rm", "-f", spec.image]
    if step in ("owned-containers", "owned-volumes"):  # what this process made, still there
        listing = ["ps", "-a"] if step == "owned-containers" else ["volume", "ls"]
        return [exe, *listing, "-q", "--filter", f"label={OWNER_LABEL}={os.getpid()}"]
    raise LabError(f"unknown container step {step!r}")


def _context(spec: Spec) -> Path:
    if spec.context is None:
        raise LabError(
            "deploy/ ships with the repository, not the installed package: clone it to build "
            "the image"
        )
    return spec.context


def run(
    engine: Engine,
    step: Step,
    spec: Spec | None = None,
    *,
    timeout: float = 120,
    args: Sequence[str] = (),
    entrypoint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one step to its end and return what it printed (its exit code is not checked)."""
    argv = engine_argv(engine, step, spec, args=args, entrypoint=entrypoint)
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"`{engine.name} {step}` did not finish within {timeout:.0f} s") from None
    except OSError as exc:
        raise LabError(f"cannot run {engine.path}: {exc.strerror}") from None


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    """The last line an engine printed (its error, when it failed)."""
    lines = (done.stderr or done.stdout or "").strip().splitlines()
    return lines[-1].strip() if lines else f"exit code {done.returncode}, no output"


def find_engine() -> tuple[Engine | None, str]:
    """The first of docker, podman on PATH whose `info` succeeds, or None and why, in a line:
    "docker on PATH but `docker info` failed: Cannot connect to the Docker daemon ..."."""
    reasons = []
    for name in ENGINES:
        path = shutil.which(name)
        if path is None:
            continue
        engine = Engine(name, path)
        try:
            done = run(engine, "info", timeout=60)
        except LabError as exc:
            reasons.append(f"{name} on PATH but {exc}")
            continue
        if done.returncode == 0:
            return engine, ""
        reasons.append(f"{name} on PATH but `{name} info` failed: {last_line(done)}")
    return None, "; ".join(reasons) or "no docker or podman on PATH"


def find_base_image(engine: Engine, spec: Spec | None = None) -> str:
    """Empty when the Dockerfile's base image is here or could be pulled now, else why not."""
    if run(engine, "inspect-base", spec, timeout=60).returncode == 0:
        return ""
    pulled = run(engine, "pull-base", spec, timeout=900)
    if pulled.returncode == 0:
        return ""
    base = base_image(_context(spec or Spec()) / DOCKERFILE)
    return (
        f"{engine.name} works, but the base image {base} is not here and cannot be pulled: "
        f"{last_line(pulled)}"
    )


def usable(spec: Spec | None = None) -> tuple[Engine | None, str]:
    """An engine that can build the image here (it answers, the repository's Dockerfile is
    here, its base image is here or can be pulled), or None and why not, in one line."""
    engine, why = find_engine()
    if engine is None:
        return None, why
    try:
        _context(spec or Spec())
        why = find_base_image(engine, spec)
    except LabError as exc:
        why = str(exc)
    return (engine, "") if not why else (None, why)


def build(engine: Engine, spec: Spec | None = None, timeout: float = 1800) -> None:
    """Build the image from deploy/Dockerfile, the repository as context; a failure says why
    with the end of the engine's output."""
    done = run(engine, "build", spec, timeout=timeout)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise LabError(f"`{engine.name} build` failed (exit code {done.returncode}):\n{tail}")


def _remove(engine: Engine, step: Step, spec: Spec) -> None:
    """Best effort: what is already gone is fine, an engine that hangs is not waited for."""
    with contextlib.suppress(LabError):
        run(engine, step, spec, timeout=60)


@contextlib.contextmanager
def seeded_volume(engine: Engine, spec: Spec, timeout: float = 900) -> Iterator[Spec]:
    """A volume holding the dataset (`spec.size`, `spec.seed`), generated in it by the image's
    `seed` role; the seed container and the volume are removed when the block ends."""
    try:
        made = run(engine, "volume", spec)
        if made.returncode != 0:
            raise LabError(f"`{engine.name} volume create` failed: {last_line(made)}")
        seeded = run(engine, "seed", spec, timeout=timeout)
        if seeded.returncode != 0:
            tail = "\n".join((seeded.stdout + seeded.stderr).strip().splitlines()[-20:])
            raise LabError(f"the seed container failed (exit code {seeded.returncode}):\n{tail}")
        yield spec
    finally:
        _remove(engine, "remove", spec)
        _remove(engine, "remove-volume", spec)


@dataclass
class Catalog:
    """A running containerized catalog: its URL, its environment, its output file."""

    url: str
    env: dict[str, str]
    output: Path


@contextlib.contextmanager
def catalog(engine: Engine, spec: Spec, output: Path, timeout: float = 120) -> Iterator[Catalog]:
    """The catalog role on `spec`'s volume, published on 127.0.0.1:`spec.port`, ready when its
    /healthz answers 200 (within `timeout`, else a `LabError` with the container's last log
    lines). The engine's client runs in the foreground (`perflab.procs.spawn`), so the
    container's output lands in `output`; the container is removed when the block ends."""
    proc = spawn(f"{engine.name}-{spec.container}", engine_argv(engine, "catalog", spec),
                 output=output)  # fmt: skip
    try:
        wait_until(http_ok(spec.url + "/healthz"), proc, timeout, "answering /healthz")
        yield Catalog(spec.url, dict(spec.env), output)
    finally:
        _remove(engine, "remove", spec)
        proc.stop(timeout=10)


def experiment(profile: LoadProfile, settings: Mapping[str, object] | None = None) -> Experiment:
    """The comparison as the lab records it: the bare catalog (the baseline) and the
    containerized one, with the same settings, dataset and read."""
    merged = {**SETTINGS, **(settings or {})}
    return Experiment(
        name=EXPERIMENT,
        title="The catalog in a container vs bare, on the same read and dataset",
        question="What does a container (with compose's CPU and memory limits) cost a read?",
        variants=[Variant(BARE, dict(merged)), Variant(CONTAINED, dict(merged))],
        mix=list(MIX),
        profile=profile,
        quick_profile=profile,
        service="catalog",
    )


def measure(
    lab: Lab,
    engine: Engine,
    *,
    profile: LoadProfile,
    repeat: int = 2,
    settings: Mapping[str, object] | None = None,
    image: str = IMAGE,
    name: str = "container",
    progress: bool = True,
) -> Run:
    """Load the bare catalog (`lab.service`) and the containerized one (`image`, already built)
    with the same read, interleaved (`runner.schedule`: A B, then B A), each repetition on a
    fresh process; one run folder. Ctrl-C keeps what was measured; a failed load saves the run
    so far, then says why."""
    from perflab import runner
    from perflab.loadgen import dataset_config
    from perflab.results import Run, log_records
    from perflab.scrape import MetricsScraper

    if repeat < 1:
        raise LabError("repeat must be at least 1")
    profile.validate()
    exp = experiment(profile, settings)
    spec = Spec.new(size=lab.size, seed=lab.seed, settings=settings, image=image)
    run = Run.start(name, repeat=repeat)
    dataset = lab.ensure_data()
    run.manifest.update(dataset=dataset, database=lab.database_url.split("://")[0])
    run.add_experiment(exp, profile, engine=engine.name, image=image, limits=CATALOG_LIMITS)
    interrupted, failure = False, None
    try:
        with seeded_volume(engine, spec):
            for rep, variant in runner.schedule(exp, repeat):
                if variant.name == BARE:
                    stopped = runner.run_variant(
                        lab, run, exp, variant, profile, repeat=rep, dataset=dataset,
                        progress=progress,
                    )  # fmt: skip
                    if stopped:
                        raise KeyboardInterrupt
                    continue
                label = f"{exp.name}-{variant.name}-r{rep}"
                with catalog(engine, spec, run.log_dir / f"{label}.out") as ctr:
                    scraper = MetricsScraper(ctr.url).start()
                    try:
                        result = runner.load(
                            run, ctr.url, exp.mix, profile, label=label, progress=progress,
                            extra_config=dataset_config(dataset),
                        )  # fmt: skip
                    finally:
                        metrics = scraper.stop()
                run.add_variant(
                    exp.name, variant.name, result.samples, settings=variant.settings,
                    repeat=rep, env=ctr.env, metrics=metrics, logs=log_records(ctr.output),
                )  # fmt: skip
                if result.interrupted:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
    except LabError as exc:
        failure = exc
    runner.save(run, interrupted=interrupted)
    if failure is not None:
        if run.samples.empty:
            raise failure
        raise LabError(f"{failure}\n(what was measured before is saved in {run.path})") from None
    return run


def table(run: Run, statistics: Sequence[str] = ("p50", "p95", "rps")) -> pd.DataFrame:
    """The containerized catalog against the bare one, as `perflab compare BASE NEW` computes
    it (`stats.compare_runs`): each statistic in each (ms; rps in requests/s), the speed-up of
    the container (above 1: faster), its 95% CI and the verdict."""
    s = run.samples
    if s.empty:
        raise LabError(f"run {run.path.name} has no samples to compare")
    s = s[s["experiment"] == EXPERIMENT]
    bare = s[s["variant"] == BARE].assign(variant="catalog")
    contained = s[s["variant"] == CONTAINED].assign(variant="catalog")
    out = stats.compare_runs(bare, contained, statistics)
    if out.empty:
        raise LabError(f"run {run.path.name} did not measure both the bare and the container")
    out = out.rename(columns={"base": BARE, "new": CONTAINED, "ratio": "speed-up"})
    return out[["endpoint", "statistic", BARE, CONTAINED, "speed-up", "ci_low", "ci_high",
                "verdict"]].reset_index(drop=True)  # fmt: skip


__all__ = [
    "BARE",
    "CATALOG_LIMITS",
    "CONTAINED",
    "Catalog",
    "Engine",
    "Spec",
    "Step",
    "base_image",
    "build",
    "catalog",
    "engine_argv",
    "find_base_image",
    "find_engine",
    "measure",
    "run",
    "seeded_volume",
    "table",
    "usable",
]
