"""The image builds and runs as a non-root user, where a container engine can build it.

Skipped, with the reason, where none can: no `docker`/`podman` on PATH, an engine that does not
answer (`docker info` fails: a client without a daemon), or a base image that cannot be pulled
(machines that reach only package registries). Skipping says so; it never passes for a build.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
TAG = "perflab-test:latest"


def _engine() -> tuple[str | None, str]:
    """The first engine that can build here, or None and why not."""
    reasons = []
    for name in ("docker", "podman"):
        path = shutil.which(name)
        if path is None:
            reasons.append(f"no {name} on PATH")
            continue
        info = subprocess.run([path, "info"], capture_output=True, text=True, timeout=60)
        if info.returncode != 0:
            last = (info.stderr or info.stdout).strip().splitlines()[-1:] or ["no output"]
            reasons.append(f"`{name} info` failed: {last[0]}")
            continue
        return path, ""
    return None, "; ".join(reasons)


def _base_image() -> str:
    text = DOCKERFILE.read_text()
    found = re.search(r"ARG PYTHON_VERSION=(\S+)", text)
    assert found, "the Dockerfile names no PYTHON_VERSION"
    return f"python:{found.group(1)}-slim"


def test_the_image_builds_and_runs_as_non_root():
    engine, why = _engine()
    if engine is None:
        pytest.skip(f"no container engine can build here: {why}")
    base = _base_image()
    have = subprocess.run([engine, "image", "inspect", base], capture_output=True, timeout=60)
    if have.returncode != 0:
        pulled = subprocess.run([engine, "pull", base], capture_output=True, text=True, timeout=600)
        if pulled.returncode != 0:
            pytest.skip(f"cannot pull the base image {base}: {pulled.stderr.strip()[-300:]}")
    ignore = ["--ignorefile", str(DOCKERFILE) + ".dockerignore"] if "podman" in engine else []
    build = subprocess.run(
        [engine, "build", "-f", str(DOCKERFILE), *ignore, "-t", TAG, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    try:
        uid = subprocess.run(
            [engine, "run", "--rm", "--entrypoint", "id", TAG, "-u"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert uid.returncode == 0 and uid.stdout.strip() not in ("", "0"), uid
        roles = subprocess.run(
            [engine, "run", "--rm", TAG, "help"], capture_output=True, text=True, timeout=120
        )
        assert roles.returncode == 0 and "locust-worker --master" in roles.stdout, roles
        # the package is installed (not the source tree): the apps import from site-packages
        where = subprocess.run(
            [
                engine,
                "run",
                "--rm",
                "--entrypoint",
                "python",
                TAG,
                "-c",
                "import perflab_services.catalog.main as m; print(m.__file__)",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert where.returncode == 0 and "site-packages" in where.stdout, where
    finally:
        subprocess.run([engine, "image", "rm", "-f", TAG], capture_output=True, timeout=120)
