"""`perflab.containers` without a container engine: the command lines it builds, how it finds an
engine (fake `docker`/`podman` scripts on PATH), that it removes what it made when a step fails
or is interrupted, and the comparison table it reads from a run.

Building and measuring for real is tests/deploy/test_image.py (skipped, with the reason, where
no engine can build)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import synthetic
import yaml

from perflab import containers
from perflab.classroom import lessons
from perflab.containers import Engine, Spec, engine_argv
from perflab.errors import LabError
from perflab.results import Run
from perflab_services.catalog.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = Engine("docker", "/usr/bin/docker")
PODMAN = Engine("podman", "/usr/bin/podman")


def _spec(**kw: object) -> Spec:
    return Spec.new(size="tiny", seed=7, **kw)  # type: ignore[arg-type]


def _env_of(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    return dict(p.split("=", 1) for p in pairs)


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# --- the command lines -------------------------------------------------------------------------


def test_build_uses_the_repository_as_context_and_podman_gets_the_ignore_file():
    spec = Spec(image="perflab-x:1", context=ROOT)
    docker = engine_argv(DOCKER, "build", spec)
    podman = engine_argv(PODMAN, "build", spec)
    assert docker == [
        "/usr/bin/docker", "build", "-f", str(ROOT / "deploy" / "Dockerfile"),
        "-t", "perflab-x:1", str(ROOT),
    ]  # fmt: skip
    assert podman[:2] == ["/usr/bin/podman", "build"] and podman[-1] == str(ROOT)
    ignore = Path(_option(podman, "--ignorefile"))
    assert ignore == ROOT / "deploy" / "Dockerfile.dockerignore" and ignore.is_file()


def test_without_a_checkout_there_is_nothing_to_build():
    with pytest.raises(LabError, match="ships with the repository"):
        engine_argv(DOCKER, "build", Spec(context=None))


def test_the_catalog_runs_with_compose_limits_on_loopback_with_the_seeded_volume():
    spec = _spec(settings={"cache": "memory"})
    argv = engine_argv(DOCKER, "catalog", spec)
    assert argv[:2] == ["/usr/bin/docker", "run"] and "--rm" not in argv
    assert _option(argv, "--name") == spec.container
    assert _option(argv, "--cpus") == "1.0" and _option(argv, "--memory") == "512m"
    assert _option(argv, "-p") == f"127.0.0.1:{spec.port}:8000"
    assert _option(argv, "-v") == f"{spec.volume}:/data"
    assert argv[-2:] == [spec.image, "catalog"]  # the role, after the image
    assert _option(argv, "--label") == f"perflab.owner={os.getpid()}"
    env = _env_of(argv)
    assert env["CATALOG_QUERIES"] == "optimized" and env["CATALOG_CACHE"] == "memory"
    assert env["CATALOG_TRACING"] == "off"
    assert env["CATALOG_RATE_LIMIT_ENABLED"] == "false"  # the lab's default, as for the bare one
    assert env["DATABASE_URL"] == "sqlite:////data/catalog.sqlite3"


def test_the_seed_role_fills_the_same_volume_with_the_labs_dataset():
    spec = _spec()
    argv = engine_argv(PODMAN, "seed", spec)
    assert argv[argv.index("run") + 1] == "--rm"
    assert _option(argv, "--name") == spec.seed_container
    assert _option(argv, "-v") == f"{spec.volume}:/data"
    assert (
        _env_of(argv)["DATABASE_URL"]
        == _env_of(engine_argv(PODMAN, "catalog", spec))["DATABASE_URL"]
    )
    assert argv[-6:] == [spec.image, "seed", "--size", "tiny", "--seed", "7"]


def test_the_roles_it_runs_are_the_entrypoints():
    module = importlib.util.spec_from_file_location("entrypoint", ROOT / "deploy" / "entrypoint.py")
    assert module is not None and module.loader is not None
    entrypoint = importlib.util.module_from_spec(module)
    module.loader.exec_module(entrypoint)
    spec = _spec()
    assert engine_argv(DOCKER, "catalog", spec)[-1] in entrypoint.EXEC_ROLES
    assert engine_argv(DOCKER, "seed", spec)[-5] in entrypoint.RUN_ROLES
    assert entrypoint.PORT == containers.CONTAINER_PORT


def test_the_limits_and_hardening_are_composes():
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    for name, limits in (("catalog", containers.CATALOG_LIMITS), ("seed", containers.SEED_LIMITS)):
        assert services[name]["deploy"]["resources"]["limits"] == limits, name
    base = compose["x-perflab"]
    argv = engine_argv(DOCKER, "catalog", _spec())
    assert base["read_only"] is True and "--read-only" in argv
    assert base["tmpfs"] == [_option(argv, "--tmpfs")]
    assert base["security_opt"] == [_option(argv, "--security-opt")]
    assert base["cap_drop"] == [_option(argv, "--cap-drop")]


def test_every_variable_set_in_the_container_is_a_catalog_setting_it_accepts(monkeypatch):
    env = _env_of(engine_argv(DOCKER, "catalog", _spec(settings={"cache": "memory"})))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert (settings.cache, settings.queries, settings.rate_limit_enabled) == (
        "memory", "optimized", False,
    )  # fmt: skip
    assert settings.database_url == env["DATABASE_URL"]
    assert settings.secrets_dir == "/data/secrets"


def test_a_redis_cache_is_refused_and_each_spec_has_its_own_names():
    with pytest.raises(LabError, match="without Redis"):
        _spec(settings={"cache": "redis"})
    a, b = _spec(), _spec()
    assert len({a.container, b.container, a.volume, b.volume}) == 4 and a.port > 0


def test_the_base_image_is_the_dockerfiles():
    assert containers.base_image(ROOT / "deploy" / "Dockerfile").startswith("python:3.")
    assert engine_argv(DOCKER, "pull-base", Spec(context=ROOT))[-1] == containers.base_image()
    assert engine_argv(DOCKER, "info") == ["/usr/bin/docker", "info"]
    assert engine_argv(PODMAN, "remove", Spec(container="c"))[-3:] == ["--ignore", "c", "c-seed"]
    assert engine_argv(DOCKER, "owned-volumes")[1:] == [
        "volume", "ls", "-q", "--filter", f"label=perflab.owner={os.getpid()}",
    ]  # fmt: skip


# --- finding an engine: fake engines on PATH ---------------------------------------------------


def _fake(folder: Path, name: str, body: str) -> Path:
    """An executable `name` in `folder` that logs its arguments, then runs `body` (sh)."""
    script = folder / name
    script.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/calls.log"\n{body}\n')
    script.chmod(0o755)
    return script


DAEMONLESS = (
    'if [ "$1" = info ]; then echo "Client: fake" ; '
    'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1; fi'
)


def test_a_client_without_a_daemon_is_no_engine_and_says_why(tmp_path, monkeypatch):
    _fake(tmp_path, "docker", DAEMONLESS)
    monkeypatch.setenv("PATH", str(tmp_path))
    engine, why = containers.find_engine()
    assert engine is None
    assert why == (
        "docker on PATH but `docker info` failed: "
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
    )
    assert containers.usable() == (None, why)


def test_an_engine_that_answers_info_is_found(tmp_path, monkeypatch):
    fake = _fake(tmp_path, "docker", 'echo "Server Version: fake"')
    monkeypatch.setenv("PATH", str(tmp_path))
    assert containers.find_engine() == (Engine("docker", str(fake)), "")


def test_podman_is_used_when_docker_does_not_answer(tmp_path, monkeypatch):
    _fake(tmp_path, "docker", DAEMONLESS)
    podman = _fake(tmp_path, "podman", "exit 0")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert containers.find_engine() == (Engine("podman", str(podman)), "")


def test_no_engine_on_path_is_said_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert containers.find_engine() == (None, "no docker or podman on PATH")


def test_a_base_image_that_cannot_be_pulled_is_said(tmp_path, monkeypatch):
    _fake(
        tmp_path,
        "docker",
        'case "$1" in info) exit 0;; image) exit 1;; '
        'pull) echo "Error response from daemon: no route to registry-1.docker.io" >&2; exit 1;; '
        "esac",
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    engine, why = containers.usable(Spec(context=ROOT))
    assert engine is None
    assert why.startswith(f"docker works, but the base image {containers.base_image()} is not")
    assert why.endswith("no route to registry-1.docker.io")
    engine, why = containers.usable(Spec(context=None))
    assert engine is None and "ships with the repository" in why


# --- what it made is removed -------------------------------------------------------------------


def test_a_failed_seed_removes_the_seed_container_and_the_volume(tmp_path, monkeypatch):
    fake = _fake(
        tmp_path,
        "docker",
        'case "$1" in run) echo "seed: unknown size" >&2; exit 2;; esac; exit 0',
    )
    spec = _spec()
    with (
        pytest.raises(LabError, match=r"seed container failed \(exit code 2\)"),
        containers.seeded_volume(Engine("docker", str(fake)), spec),
    ):
        pytest.fail("the block runs only on a seeded volume")
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[-2:] == [
        f"rm -f {spec.container} {spec.seed_container}",
        f"volume rm -f {spec.volume}",
    ]


def test_ctrl_c_inside_the_block_still_removes_the_volume(tmp_path):
    fake = _fake(tmp_path, "docker", "exit 0")
    spec = _spec()
    with (
        pytest.raises(KeyboardInterrupt),
        containers.seeded_volume(Engine("docker", str(fake)), spec),
    ):
        raise KeyboardInterrupt
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[0] == f"volume create --label perflab.owner={os.getpid()} {spec.volume}"
    assert calls[1].startswith("run --rm --name " + spec.seed_container)
    assert calls[-1] == f"volume rm -f {spec.volume}"


@pytest.mark.slow  # spawns the (fake) engine client through perflab.procs
def test_a_container_that_exits_says_why_and_is_removed(tmp_path):
    fake = _fake(
        tmp_path,
        "docker",
        'case "$1" in run) echo "sqlite3.OperationalError: unable to open database file"; '
        "exit 3;; esac; exit 0",
    )
    spec = _spec()
    with (
        pytest.raises(LabError) as failed,
        containers.catalog(Engine("docker", str(fake)), spec, tmp_path / "catalog.out"),
    ):
        pytest.fail("the block runs only on a healthy catalog")
    assert "exited with code 3 before answering /healthz" in str(failed.value)
    assert "unable to open database file" in str(failed.value)  # the container's log tail
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls[-1] == f"rm -f {spec.container} {spec.seed_container}"


# --- the comparison, read from a run -----------------------------------------------------------


def test_the_table_compares_the_container_with_the_bare_catalog_with_cis():
    exp = containers.experiment(synthetic.PROFILE)
    run = Run.start("container-table", repeat=2, quick=True)
    run.add_experiment(exp, synthetic.PROFILE)
    for rep in range(2):
        for variant, median in ((containers.BARE, 10.0), (containers.CONTAINED, 12.5)):
            lat = synthetic.lognormal(500, median, seed=rep * 10 + int(median))
            s = synthetic.samples(lat, rate=50, endpoint="GET /products/{id}")
            run.add_variant(exp.name, variant, s, settings={}, repeat=rep)
    run.finish()
    table = containers.table(Run.load(run.path))
    assert list(table["statistic"]) == ["p50", "p95", "rps"]
    p50 = table.set_index("statistic").loc["p50"]
    assert p50["bare"] == pytest.approx(10.0, rel=0.1)
    assert p50["container"] == pytest.approx(12.5, rel=0.1)
    assert p50["speed-up"] == pytest.approx(p50["bare"] / p50["container"])
    assert p50["ci_low"] <= p50["speed-up"] <= p50["ci_high"] < 1
    assert p50["verdict"] == "slower"
    # the sentence the notebook prints reads the same ratio from the run
    sentence = lessons.effect(run, "container", "container", "p50")
    assert sentence.startswith(f"container vs bare on p50: {1 / p50['speed-up']:.2f}x slower")
    assert np.isfinite(table["ci_low"]).all()


def test_a_run_without_the_container_has_no_table():
    run = Run.start("container-empty", quick=True)
    with pytest.raises(LabError, match="no samples"):
        containers.table(run)


# --- the whole measurement, with a stand-in engine --------------------------------------------

STAND_IN = '''#!{python}
"""A stand-in for `docker`: runs the image's entrypoint (deploy/entrypoint.py) on this machine
instead of in a container. A volume is a folder, a published port is the server's own port."""
import os, shutil, signal, sys
from pathlib import Path

HOME = Path(__file__).resolve().parent
ENTRYPOINT = {entrypoint!r}
WITH_VALUE = {{"--name", "--label", "--cpus", "--memory", "--tmpfs", "--security-opt",
              "--cap-drop", "-v", "-p", "-e", "--entrypoint"}}
args = sys.argv[1:]
with open(HOME / "calls.log", "a") as log:
    log.write(" ".join(args) + "\\n")
volumes, running = HOME / "volumes", HOME / "running"
if args[:2] == ["volume", "create"]:
    (volumes / args[-1] / "secrets").mkdir(parents=True)
elif args[:2] == ["volume", "rm"]:
    shutil.rmtree(volumes / args[-1], ignore_errors=True)
elif args[0] == "rm":
    for name in args[2:]:
        pid = running / name
        if pid.exists():
            os.kill(int(pid.read_text()), signal.SIGTERM)  # alive: only `rm` removes it
            pid.unlink()
elif args[0] == "run":
    opts, i = {{}}, 1
    while args[i].startswith("-"):
        if args[i] in WITH_VALUE:
            opts.setdefault(args[i], []).append(args[i + 1])
            i += 2
        else:
            i += 1
    role = args[i + 1:]
    volume, mount = opts["-v"][0].split(":")
    folder = str(volumes / volume)
    env = dict(e.split("=", 1) for e in opts.get("-e", []))
    env = {{k: v.replace(mount, folder) for k, v in env.items()}}
    if role[0] == "catalog":
        role += ["--port", opts["-p"][0].split(":")[1]]
    running.mkdir(exist_ok=True)
    if "--rm" not in args[:i]:  # a --rm container (the seed) is gone when it exits
        (running / opts["--name"][0]).write_text(str(os.getpid()))
    os.chdir(folder)
    os.execve(sys.executable, [sys.executable, ENTRYPOINT, *role], {{**os.environ, **env}})
'''


@pytest.mark.slow  # real services and Locust, through a stand-in engine
def test_measure_loads_both_interleaved_and_removes_what_it_made(tmp_path, monkeypatch):
    """The measuring flow end to end where no engine runs: the stand-in runs the image's own
    entrypoint roles (seed, then catalog) on loopback, so everything but the container's
    isolation is real. What a container costs is measured only where one runs
    (tests/deploy/test_image.py)."""
    from perflab.lab import Lab
    from perflab.loadgen import LoadProfile

    engine_dir = tmp_path / "engine"
    engine_dir.mkdir()
    docker = engine_dir / "docker"
    docker.write_text(
        STAND_IN.format(python=sys.executable, entrypoint=str(ROOT / "deploy" / "entrypoint.py"))
    )
    docker.chmod(0o755)
    engine = Engine("docker", str(docker))
    profile = LoadProfile(model="closed", users=2, duration=3, warmup=0.5)
    with Lab(size="tiny", log_dir=tmp_path / "logs") as lab:
        run = containers.measure(lab, engine, profile=profile, repeat=2, name="test-measure",
                                 progress=False)  # fmt: skip
    assert not run.errors and not run.interrupted
    s = run.samples
    order = s.groupby(["repeat", "variant"])["t_start"].min().sort_values()
    assert [v for _, v in order.index] == ["bare", "container", "container", "bare"]
    for variant in (containers.BARE, containers.CONTAINED):
        mine = s[s["variant"] == variant]
        assert len(mine) > 0 and mine["ok"].all(), variant
        assert set(mine["endpoint"]) == {"GET /products/{id}"}
    table = containers.table(run)
    assert list(table["statistic"]) == ["p50", "p95", "rps"]
    assert ((table["ci_low"] <= table["speed-up"]) & (table["speed-up"] <= table["ci_high"])).all()
    # the container's own log lines (its stdout) are in the run, as the bare one's are
    assert set(run.logs["variant"]) == {"bare", "container"}
    calls = (engine_dir / "calls.log").read_text().splitlines()
    assert calls[0].startswith("volume create") and calls[-1].startswith("volume rm -f")
    assert sum(c.startswith("run --name") for c in calls) == 2  # a fresh catalog per repeat
    assert not list((engine_dir / "volumes").iterdir())
    assert not list((engine_dir / "running").iterdir())  # every catalog was removed
