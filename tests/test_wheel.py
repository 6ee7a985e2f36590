"""perflab as a user installs it: build the sdist and wheel, install the wheel outside the checkout,
run `perflab demo --quick` from an empty folder.

What this proves: the wheel carries everything a run needs (the locustfiles, the services, the
notebooks), finds it with importlib.resources, writes its data and results under the working
directory (`./perflab-data/`) and nothing into its installation.

The wheel goes into a fresh venv with `--no-deps`; its dependencies come from the development
environment through a `.pth` line (a path only: the editable install's finder there is not
activated, so the only perflab importable is the wheel's). Installing the ~150 dependency wheels
again would test pip, not perflab, and take minutes; the CI's `package` job does exactly that
(.github/workflows/ci.yml), and here `PERFLAB_WHEEL_DEPS=index` does it too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # builds, installs, and runs the demo (services, Redis, Locust)

# What a user's shell would not have: the test suite's own folders and external servers.
LAB_VARIABLES = ("PERFLAB_DATA_DIR", "PERFLAB_RESULTS_DIR", "REDIS_URL", "DATABASE_URL")


def _source_copy(dest: Path) -> Path:
    """The files a clone would have (tracked and new, not ignored): no .venv, no egg-info."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAB_VARIABLES}
    env.pop("PYTHONPATH", None)
    return env


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower()


@pytest.mark.timeout(900)
def test_the_wheel_runs_the_demo_from_an_empty_folder(tmp_path: Path) -> None:
    # 1. sdist and wheel, the wheel built from the sdist (python -m build): both complete
    src = _source_copy(tmp_path / "src")
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(src)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("perflab-*.whl")
    assert len(list(dist.glob("perflab-*.tar.gz"))) == 1
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "perflab/loadtests/lab.py",
        "perflab/loadtests/perflab_recorder.py",
        "perflab/notebooks/00_quickstart.ipynb",
        "perflab_services/catalog/main.py",
    ):
        assert needed in names, needed
    assert any(n.startswith("perflab/notebooks/exercises/") for n in names)
    tops = {n.split("/")[0] for n in names}
    assert tops == {"perflab", "perflab_services", wheel.name.split("-py3")[0] + ".dist-info"}
    assert not any("/solutions/" in n for n in names)  # instructors release those

    # 2. a fresh venv outside the checkout, the wheel in it
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    )  # fmt: skip
    pip = [sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet"]
    if os.environ.get("PERFLAB_WHEEL_DEPS") == "index":
        installed = subprocess.run([*pip, str(wheel)], capture_output=True, text=True)
    else:
        (site / "_dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        installed = subprocess.run(
            [*pip, "--no-deps", "--no-index", str(wheel)], capture_output=True, text=True
        )
    assert installed.returncode == 0, installed.stderr
    where = subprocess.run(
        [py, "-c", "import perflab.paths as p, perflab_services as s, importlib.metadata as m; "
                   "print(p.PACKAGE, p.CHECKOUT, s.__file__, sep='\\n'); "
                   "print(*m.requires('perflab'), sep='\\n')"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout.splitlines()  # fmt: skip
    assert Path(where[0]) == site / "perflab" and where[1] == "None", where
    assert Path(where[2]).is_relative_to(site), where
    # notebooks name files as the repository lays them out; the wheel finds them in its packages
    shown = subprocess.run(
        [py, "-c", "from perflab.classroom.show import show_file; "
                   "print(show_file('loadtests/lab.py', 'LabUser.one_request'))"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert shown.returncode == 0 and "def one_request" in shown.stdout, shown.stderr
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = [r for r in where[3:] if "extra ==" not in r]
    assert sorted(map(_name, runtime)) == sorted(map(_name, declared)), runtime

    # 3. the quick demo from an empty folder: results there, nothing into the installation
    before = _tree(venv)
    work = tmp_path / "empty"
    work.mkdir()
    demo = subprocess.run(
        [venv / "bin" / "perflab", "demo", "--quick"],
        cwd=work, env=_user_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    print(demo.stdout[-2500:])
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Traceback" not in demo.stdout + demo.stderr
    assert f"data and results: {work / 'perflab-data'}" in demo.stdout
    assert [p.name for p in work.iterdir()] == ["perflab-data"]
    (run,) = (work / "perflab-data" / "results").iterdir()
    summary = pd.read_csv(run / "summary.csv")
    assert set(zip(summary["experiment"], summary["variant"], strict=True)) == {
        ("queries", "naive"), ("queries", "optimized"),
        ("caching", "none"), ("caching", "memory"), ("caching", "redis"),
    }  # fmt: skip
    assert (summary["requests"] > 0).all() and (summary["failures"] == 0).all()
    assert (run / "report.html").is_file() and (run / "samples.csv.gz").is_file()
    assert _tree(venv) == before, sorted(_tree(venv) ^ before)[:20]

    # 4. the notebooks, copied out for a user who did not clone; a second copy keeps them
    out = subprocess.run(
        [venv / "bin" / "perflab", "notebooks", "nb"],
        cwd=work, env=_user_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    copied = _tree(work / "nb")
    assert "00_quickstart.ipynb" in copied and "README.md" in copied
    assert any(c.startswith("exercises/") for c in copied)
    assert "testing/test_catalog.py" in copied  # notebook 14's tests, beside it
    assert not any("solutions" in c or c.endswith("__init__.py") for c in copied)
    (work / "nb" / "00_quickstart.ipynb").write_text("{}")  # a student's edits
    again = subprocess.run(
        [venv / "bin" / "perflab", "notebooks", "nb"],
        cwd=work, env=_user_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0 and "copied 0 files" in again.stdout, again.stdout
    assert (work / "nb" / "00_quickstart.ipynb").read_text() == "{}"
    assert _tree(venv) == before
