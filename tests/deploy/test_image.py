"""The image builds, runs as a non-root user, and its catalog is measured against the bare one,
where a container engine can build it.

Skipped, with the reason `perflab.containers.usable` gives, where none can: no `docker`/`podman`
on PATH, an engine that does not answer (`docker info` fails: a client without a daemon), or a
base image that cannot be pulled (machines that reach only package registries). Skipping says
so; it never passes for a build. The command lines themselves are checked without an engine in
tests/perflab/test_containers.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from perflab import containers
from perflab.containers import Engine, Spec
from perflab.lab import Lab
from perflab.loadgen import LoadProfile

pytestmark = pytest.mark.slow

TAG = "perflab-test:latest"


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[Engine, Spec]]:
    """The image built once for this module (tag `TAG`), removed after it."""
    spec = Spec(image=TAG)
    engine, why = containers.usable(spec)
    if engine is None:
        pytest.skip(f"no container engine can build here: {why}")
    try:
        containers.build(engine, spec)
        yield engine, spec
    finally:
        containers.run(engine, "remove-image", spec, timeout=120)


def test_the_image_builds_and_runs_as_non_root(built):
    engine, spec = built
    uid = containers.run(engine, "once", spec, entrypoint="id", args=["-u"])
    assert uid.returncode == 0 and uid.stdout.strip() not in ("", "0"), uid
    roles = containers.run(engine, "once", spec, args=["help"])
    assert roles.returncode == 0 and "locust-worker --master" in roles.stdout, roles
    # the package is installed (not the source tree): the apps import from site-packages
    where = containers.run(
        engine,
        "once",
        spec,
        entrypoint="python",
        args=["-c", "import perflab_services.catalog.main as m; print(m.__file__)"],
    )
    assert where.returncode == 0 and "site-packages" in where.stdout, where


def test_the_containerized_catalog_is_measured_against_the_bare_one(built, tmp_path):
    """Build, seed, run, load both interleaved, compare: the table the notebook shows, from real
    samples of both; and nothing this made is left behind."""
    engine, _ = built
    profile = LoadProfile(model="closed", users=2, duration=4, warmup=1)
    with Lab(size="tiny", log_dir=tmp_path / "logs") as lab:
        run = containers.measure(
            lab, engine, profile=profile, repeat=2, image=TAG, name="test-container",
            progress=False,
        )  # fmt: skip
    assert not run.errors and not run.interrupted
    s = run.samples
    for variant in (containers.BARE, containers.CONTAINED):
        mine = s[s["variant"] == variant]
        assert sorted(mine["repeat"].unique()) == [0, 1], variant  # interleaved, twice each
        assert mine["ok"].all() and (mine["status"] == 200).all(), variant
    table = containers.table(run)
    assert list(table["statistic"]) == ["p50", "p95", "rps"]
    assert (table["ci_low"] <= table["speed-up"]).all()
    assert (table["speed-up"] <= table["ci_high"]).all()
    assert run.manifest["experiments"]["container"]["limits"] == containers.CATALOG_LIMITS
    steps: tuple[containers.Step, ...] = ("owned-containers", "owned-volumes")
    for step in steps:
        left = containers.run(engine, step)
        assert left.returncode == 0 and left.stdout.strip() == "", f"{step}: {left.stdout}"
