"""The results contract: one folder per run under data/results/<run-id>/.

- `summary.csv`: one row per (experiment, variant, endpoint): requests, failures, rps, p50_ms,
  p90_ms, p95_ms, p99_ms, max_ms (from each request's intended start), CIs, and for open-model
  runs the `_uncorrected` percentiles beside them;
- `comparison.csv`: each variant against the experiment's baseline, with a verdict;
- `samples.csv.gz`: every request; `metrics.csv`: /metrics scraped each second;
  `logs.jsonl`: the services' request logs; `manifest.json`: what ran, where, with what;
- `plots/*.png` and `report.html`.
Users open these in pandas: the names are stable.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd

from perflab import paths

PACKAGES = (
    "perflab",
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "redis",
    "locust",
    "pandas",
    "numpy",
    "structlog",
    "prometheus-client",
    "httpx",
    "matplotlib",
)


def new_run_dir(name: str, root: Path | None = None) -> Path:
    root = root or paths.RESULTS
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}-{name}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = root / f"{stamp}-{name}-{n}"
    path.mkdir(parents=True)
    return path


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=paths.ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment() -> dict:
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    import os

    return {
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def write_manifest(run_dir: Path, manifest: dict) -> None:
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def write_table(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, float_format="%.4f")


def latest_run(root: Path | None = None) -> Path | None:
    root = root or paths.RESULTS
    runs = sorted(p for p in root.glob("*") if (p / "manifest.json").exists())
    return runs[-1] if runs else None


def resolve_run(ref: str | Path) -> Path:
    """A run folder from a path, a run id, or 'latest'."""
    from perflab.errors import LabError

    if str(ref) == "latest":
        found = latest_run()
        if found is None:
            raise LabError(f"no runs in {paths.RESULTS} yet: run `perflab demo` first")
        return found
    path = Path(ref)
    if not path.exists():
        path = paths.RESULTS / str(ref)
    if not (path / "summary.csv").exists():
        raise LabError(f"{ref} is not a run folder (no summary.csv in {path})")
    return path


def load_run(ref: str | Path) -> dict:
    """Everything a run saved, as pandas objects (missing parts are None)."""
    path = resolve_run(ref)

    def read(name: str, **kw) -> pd.DataFrame | None:
        p = path / name
        if not p.exists():
            return None
        try:
            return pd.read_csv(p, **kw)
        except pd.errors.EmptyDataError:  # an empty table is written as a bare newline
            return None

    return {
        "path": path,
        "manifest": json.loads((path / "manifest.json").read_text()),
        "summary": read("summary.csv"),
        "comparison": read("comparison.csv"),
        "samples": read("samples.csv.gz", dtype={"x_cache": "string", "request_id": "string"}),
        "metrics": read("metrics.csv"),
    }


def now() -> float:
    return time.time()
