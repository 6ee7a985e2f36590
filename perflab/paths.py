"""Where things live, in a checkout and in an installed wheel alike.

What perflab *reads* ships inside the package and is found with `importlib.resources`: the
locustfiles (`perflab.loadtests`, the repository's `loadtests/`) and the notebooks
(`perflab.notebooks`, `notebooks/`). What it *writes* (datasets, logs, secrets, run folders) goes
to the data folder, never into the installation (site-packages may be read-only, shared by
several users, or wiped by the next `pip install`):

- `PERFLAB_DATA_DIR` when set (`PERFLAB_RESULTS_DIR` moves the run folders alone);
- else, run from a checkout (an editable install, `make install`), the checkout's `data/`, so
  notebooks, `make demo` and the README agree whatever the current folder is;
- else `./perflab-data/` under the current folder, as a user who pip-installed perflab expects.

Child processes run in the data folder (`perflab.procs.spawn`): not site-packages, and not the
user's folder, whose `locust.conf` or `pyproject.toml` Locust would read and whose Python files
would shadow our modules on a child's `sys.path`.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# The folder holding the perflab package: the repository in a checkout, else site-packages.
ROOT = PACKAGE.parent
# The repository when perflab runs from one (git commit, .ci/, bench/), else None.
CHECKOUT: Path | None = ROOT if (ROOT / "pyproject.toml").is_file() else None
DATA_DIR_NAME = "perflab-data"


def _data_dir() -> Path:
    if env := os.environ.get("PERFLAB_DATA_DIR"):
        return Path(env).resolve()
    if CHECKOUT is not None:
        return CHECKOUT / "data"
    return Path.cwd() / DATA_DIR_NAME


DATA = _data_dir()
RESULTS = Path(os.environ.get("PERFLAB_RESULTS_DIR") or DATA / "results").resolve()
LOADTESTS = Path(str(files("perflab.loadtests")))
NOTEBOOKS = Path(str(files("perflab.notebooks")))


def installed(rel: str | Path) -> Path:
    """Where a repository path (`loadtests/lab.py`, `services/catalog/main.py`) is in this
    installation: in a checkout, there; in a wheel, inside the package that ships its folder
    (pyproject's package-dir), so notebooks can name files as the repository lays them out."""
    rel = Path(rel)
    if CHECKOUT is not None or not rel.parts:
        return ROOT / rel
    shipped = {
        "loadtests": LOADTESTS,
        "notebooks": NOTEBOOKS,
        "services": ROOT / "perflab_services",
    }
    base = shipped.get(rel.parts[0])
    return base.joinpath(*rel.parts[1:]) if base is not None else ROOT / rel


def workdir() -> Path:
    """The data folder, created: where child processes run (see the module docstring)."""
    DATA.mkdir(parents=True, exist_ok=True)
    return DATA
