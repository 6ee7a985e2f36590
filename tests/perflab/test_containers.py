"""`perflab.containers` without a container engine: the command lines it builds, how it finds an
engine (fake `docker`/`podman` scripts on PATH), that it removes what it made when a step fails
or is interrupted, and the comparison table it reads from a run.

Building and measuring for real is tests/deploy/test_image.py (skipped, with the reason, where
no engine can build)."""

from __future__ import annotations

import importlib.util
import os
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
