"""The results contract: one folder per run under data/results/<run-id>/, and `Run`, its object.

- `summary.csv`: one row per (experiment, variant, endpoint): requests, failures, rps, p50_ms,
  p90_ms, p95_ms, p99_ms, max_ms (from each request's intended start), CIs, and for open-model
  runs the `_uncorrected` percentiles beside them (`SUMMARY_COLUMNS`, see `perflab.stats`);
- `comparison.csv`: each variant against the experiment's baseline, with a verdict;
- `samples.csv.gz`: every request (the columns of `perflab.recorder.COLUMNS`, then experiment,
  variant, repeat, warmup_s); `metrics.csv`: /metrics scraped each second;
  `logs.jsonl`: the services' request logs; `spans.jsonl`: their OpenTelemetry spans, one per
  line (trace_id = the sample's request_id; `perflab.traces` reads, joins and plots them);
  `manifest.json`: what ran, where, with what;
- `raw/`: what Locust wrote per variant, as it ran (kept: a run that could not be finished
  still has its samples there); `logs/`: the services' own log files;
- `plots/*.png` and `report.html` (written by `perflab.report`, which reads this module).
Users open these in pandas: the names are stable.

Every run is written through one `Run`: `Run.start(name)` makes the folder, `add_experiment` and
`add_variant` record what ran and what it measured, `finish()` computes the statistics and
writes the tables. `Run.load(ref)` reads a saved one back (a path, a run id, or "latest"). A
folder that cannot be written (read-only, missing, full) is a `LabError` with one line saying
where, and what was measured is saved elsewhere first rather than lost.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from perflab import paths, stats
from perflab.errors import LabError
from perflab.recorder import COLUMNS as SAMPLE_COLUMNS

if TYPE_CHECKING:
    from perflab.experiments import Experiment
    from perflab.loadgen import LoadProfile

PACKAGES = (
    "perflab",
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "redis",
    "locust",
    "pandas",
    "numpy",
    "orjson",
    "prometheus-client",
    "httpx",
    "matplotlib",
)

KEYS = ["experiment", "variant", "endpoint"]
SUMMARY_COLUMNS = [*KEYS, *stats.STAT_COLUMNS]
COMPARISON_COLUMNS = ["experiment", *stats.COMPARE_COLUMNS]
# What every run adds to the recorder's columns in samples.csv.gz.
TAG_COLUMNS = ["experiment", "variant", "repeat", "warmup_s"]
# What `Run.table()` shows (notebooks, the CLI): the summary's headline columns.
TABLE_COLUMNS = [
    *KEYS,
    "requests",
    "failures",
    "rps",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    *stats.HEADER_COLUMNS,
]
# Errors of a folder that cannot take what we write: said in one line, never a traceback.
DISK_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.ENOENT,
    errno.EFBIG,
    errno.EEXIST,
}


def git_commit() -> str | None:
    """The checkout's commit; None for an installed wheel (whose site-packages may sit inside
    some other repository, whose commit says nothing about this code)."""
    if paths.CHECKOUT is None:
        return None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=paths.CHECKOUT,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def code_version(digits: int = 12) -> str | None:
    """The checkout's commit, shortened, and "(with uncommitted changes)" when tracked files
    differ from it: what a measurement says it ran. None outside a checkout."""
    commit = git_commit()
    if commit is None:
        return None
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=paths.CHECKOUT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = bool(out.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        dirty = False
    return commit[:digits] + (" (with uncommitted changes)" if dirty else "")


def environment() -> dict[str, Any]:
    """Where a run ran: commit, Python, platform, CPUs, and the versions that matter."""
    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
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


def now() -> float:
    return time.time()


def disk_error(exc: OSError, what: str) -> LabError:
    """One line for a folder that cannot be written: which, why, and what to do."""
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) not in what else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = "free some space, or set PERFLAB_RESULTS_DIR to a folder on another disk"
    else:
        hint = "set PERFLAB_RESULTS_DIR to a folder you can write"
    return LabError(f"cannot write {what}: {exc.strerror or exc}{where}; {hint}")


def new_run_dir(name: str, root: Path | None = None) -> Path:
    """A new folder `<date>-<time>-<name>` under the results folder (made if missing)."""
    root = root or paths.RESULTS
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}-{name}"
    path, n = base, 1
    try:
        while True:
            try:
                path.mkdir(parents=True)
                return path
            except FileExistsError:
                if not path.is_dir():
                    raise
                n += 1
                path = root / f"{stamp}-{name}-{n}"
    except OSError as exc:
        raise disk_error(exc, f"a run folder in {root}") from None


def check_writable(folder: Path) -> None:
    """Raise a one-line `LabError` unless `folder` takes a small file (a full disk, say)."""
    probe = folder / f".perflab-probe-{os.getpid()}"
    try:
        with probe.open("wb") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise disk_error(exc, f"into {folder}") from None
    finally:
        probe.unlink(missing_ok=True)


def experiment_entry(exp: Experiment, profile: LoadProfile, **extra: object) -> dict[str, Any]:
    """An experiment as the manifest records it: its question, load, mix; variants as they run."""
    return {
        "title": exp.title,
        "question": exp.question,
        "baseline": exp.baseline,
        "profile": asdict(profile),
        "mix": [asdict(e) for e in exp.mix],
        **({"warm": exp.warm} if exp.warm else {}),  # a warm experiment's warm set (runner)
        **extra,
        "variants": {},
    }


def read_logs(path: Path) -> pd.DataFrame:
    """A run's `logs.jsonl` (or any service JSON log) as a frame; unparsable lines skipped."""
    return pd.DataFrame(log_records(path))


def log_records(path: Path) -> list[dict[str, Any]]:
    """A JSON log's lines as dicts (unparsable lines skipped), as `add_variant` takes them."""
    rows = []
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _read_table(path: Path, columns: list[str], **kw: Any) -> pd.DataFrame:
    """A saved table; missing or empty (written as a bare newline) gives its columns, no rows."""
    try:
        return pd.read_csv(path, **kw)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame(columns=columns)


def latest(root: Path | None = None) -> Path | None:
    """The newest finished run folder (one with a summary), or None."""
    root = root or paths.RESULTS
    runs = sorted(p for p in root.glob("*") if (p / "summary.csv").exists())
    return runs[-1] if runs else None


def resolve(ref: str | Path) -> Path:
    """A run folder from a path, a run id, or 'latest'."""
    if str(ref) == "latest":
        found = latest()
        if found is None:
            raise LabError(f"no runs in {paths.RESULTS} yet: run `perflab demo` first")
        return found
    path = Path(ref)
    if not path.exists():
        path = paths.RESULTS / str(ref)
    if not (path / "summary.csv").exists():
        raise LabError(f"{ref} is not a run folder (no summary.csv in {path})")
    return path


@dataclass
class Run:
    """A run folder and what it holds. Shows as its summary table in notebooks.

    Written with `Run.start` / `add_experiment` / `add_variant` / `finish`; read with
    `Run.load`. The frames are empty (never None) when a part was not recorded.
    """

    path: Path
    manifest: dict[str, Any]
    summary: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SUMMARY_COLUMNS))
    comparison: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=COMPARISON_COLUMNS)
    )
    samples: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=[*SAMPLE_COLUMNS, *TAG_COLUMNS])
    )
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    logs: pd.DataFrame = field(default_factory=pd.DataFrame)
    # What `add_variant` collected, until `finish` turns it into the frames above.
    _frames: list[pd.DataFrame] = field(default_factory=list, repr=False)
    _metric_frames: list[pd.DataFrame] = field(default_factory=list, repr=False)
    _log_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    # --- writing ------------------------------------------------------------------------------
    @classmethod
    def start(cls, name: str, *, root: Path | None = None, **info: object) -> Run:
        """Make the run's folder and write a first manifest (so a folder that cannot be
        written fails here, before anything is measured). `info` goes into the manifest."""
        path = new_run_dir(name, root)
        manifest: dict[str, Any] = {
            "run_id": path.name,
            "started_at": iso(now()),
            "experiments": {},
            **info,
            **environment(),
        }
        run = cls(path, manifest)
        run.write_manifest()
        return run

    @property
    def raw_dir(self) -> Path:
        return self.path / "raw"

    @property
    def log_dir(self) -> Path:
        return self.path / "logs"

    def add_experiment(self, exp: Experiment, profile: LoadProfile, **extra: object) -> None:
        self.manifest["experiments"][exp.name] = experiment_entry(exp, profile, **extra)

    def add_variant(
        self,
        experiment: str,
        variant: str,
        samples: pd.DataFrame,
        *,
        settings: dict[str, object],
        repeat: int = 0,
        env: dict[str, str] | None = None,
        metrics: list[dict[str, Any]] | None = None,
        logs: list[dict[str, Any]] | None = None,
    ) -> None:
        """Record one variant's load (one repetition): its settings in the manifest; its
        samples, scraped metrics and log lines tagged with experiment, variant and repeat."""
        entry: dict[str, Any] = {"settings": settings}
        if env is not None:  # connection strings may hold passwords: not in the manifest
            entry["env"] = {k: v for k, v in env.items() if "URL" not in k}
        self.manifest["experiments"][experiment]["variants"][variant] = entry
        warmup = float(self.manifest["experiments"][experiment]["profile"]["warmup"])
        tags: dict[str, str | int] = {
            "experiment": experiment,
            "variant": variant,
            "repeat": repeat,
        }
        self._frames.append(samples.assign(**tags, warmup_s=warmup))
        self._metric_frames.append(pd.DataFrame(metrics or []).assign(**tags))
        self._log_rows.extend({**r, **tags} for r in logs or [])

    @property
    def spans_file(self) -> Path:
        return self.path / "spans.jsonl"

    def add_spans(
        self, files: list[Path], *, experiment: str, variant: str, repeat: int = 0
    ) -> int:
        """Append the spans the services wrote (JSON lines) to the run's `spans.jsonl`, tagged
        with experiment, variant and repeat; returns how many. Streamed line by line, at once
        (an interrupted run keeps them): a naive list request alone makes dozens of spans."""
        tags = {"experiment": experiment, "variant": variant, "repeat": repeat}
        n = 0
        try:
            with self.spans_file.open("a", encoding="utf-8") as out:
                for f in files:
                    if not f.exists():
                        continue
                    with f.open(encoding="utf-8", errors="replace") as lines:
                        for line in lines:
                            try:
                                span = json.loads(line)
                            except json.JSONDecodeError:
                                continue  # a line cut short by a killed service
                            out.write(json.dumps({**span, **tags}) + "\n")
                            n += 1
        except OSError as exc:
            raise disk_error(exc, f"the spans into {self.path}") from None
        return n

    def finish(self, *, interrupted: bool = False, errors: dict[str, str] | None = None) -> Run:
        """Compute the statistics and write every table of the contract and the manifest.

        When the folder cannot take them (a full disk, say), the samples are written to a
        folder under the system's temp directory first, and the `LabError` says where.
        """
        self.manifest.update(
            ended_at=iso(now()), interrupted=interrupted, errors=dict(errors or {})
        )
        if self._frames:
            self.samples = pd.concat(self._frames, ignore_index=True)
        if self._metric_frames:
            self.metrics = pd.concat(self._metric_frames, ignore_index=True)
        self.logs = pd.DataFrame(self._log_rows)
        self.summary, self.comparison = self._analyse()
        try:
            self._write_tables()
        except OSError as exc:
            raise self._rescue(exc) from None
        self._frames, self._metric_frames, self._log_rows = [], [], []
        return self

    def _analyse(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        summaries, comparisons = [], []
        m = stats.measured(self.samples)
        for name, entry in self.manifest["experiments"].items():
            s = m[m["experiment"] == name] if not m.empty else m
            if s.empty:
                continue
            open_model = entry["profile"]["model"] == "open"
            summaries.append(stats.summarize(s, KEYS, open_model))
            c = stats.compare_variants(s, entry["baseline"], list(entry["variants"]))
            comparisons.append(c.assign(experiment=name)[COMPARISON_COLUMNS])
        summary = (
            pd.concat(summaries, ignore_index=True)
            if summaries
            else stats.summarize(m.iloc[0:0], KEYS)
        )
        comparison = (
            pd.concat(comparisons, ignore_index=True)
            if comparisons
            else pd.DataFrame(columns=COMPARISON_COLUMNS)
        )
        return summary, comparison

    def _write_tables(self) -> None:
        if not self.samples.empty:
            self.samples.to_csv(self.path / "samples.csv.gz", index=False, compression="gzip")
        for name, df in (
            ("summary.csv", self.summary),
            ("comparison.csv", self.comparison),
            ("metrics.csv", self.metrics),
        ):
            df.to_csv(self.path / name, index=False, float_format="%.4f")
        with (self.path / "logs.jsonl").open("w") as f:
            for r in self._log_rows:
                f.write(json.dumps(r, default=str) + "\n")
        self.write_manifest()

    def _rescue(self, exc: OSError) -> LabError:
        """Save the samples and manifest outside the run folder; the error to show."""
        why = disk_error(exc, f"the run into {self.path}")
        if self.samples.empty:
            return LabError(f"{why} (no requests had been measured)")
        try:
            spare = Path(tempfile.mkdtemp(prefix=f"perflab-{self.path.name}-"))
            self.samples.to_csv(spare / "samples.csv.gz", index=False, compression="gzip")
            (spare / "manifest.json").write_text(json.dumps(self.manifest, default=str))
        except OSError as again:
            return LabError(
                f"{why}; could not save the {len(self.samples)} samples elsewhere either "
                f"({again.strerror}): what Locust recorded is in {self.raw_dir}"
            )
        return LabError(f"{why}; the {len(self.samples)} samples measured are saved in {spare}")

    def write_manifest(self) -> None:
        try:
            text = json.dumps(self.manifest, indent=2, default=str) + "\n"
            (self.path / "manifest.json").write_text(text)
        except OSError as exc:
            raise disk_error(exc, f"the run's manifest into {self.path}") from None

    # --- reading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, ref: str | Path) -> Run:
        """A saved run from its folder, its run id, or "latest"."""
        path = resolve(ref)
        samples = _read_table(
            path / "samples.csv.gz",
            [*SAMPLE_COLUMNS, *TAG_COLUMNS],
            dtype={"x_cache": "string", "request_id": "string"},
        )
        if not samples.empty:
            samples["x_cache"] = samples["x_cache"].fillna("")
            samples["ok"] = samples["ok"].astype(bool)
        return cls(
            path=path,
            manifest=json.loads((path / "manifest.json").read_text()),
            summary=_read_table(path / "summary.csv", SUMMARY_COLUMNS),
            comparison=_read_table(path / "comparison.csv", COMPARISON_COLUMNS),
            samples=samples,
            metrics=_read_table(path / "metrics.csv", []),
            logs=read_logs(path / "logs.jsonl"),
        )

    # --- looking ------------------------------------------------------------------------------
    @property
    def errors(self) -> dict[str, str]:
        """Variants that did not run, with why (`experiment/variant` -> one line)."""
        return dict(self.manifest.get("errors") or {})

    @property
    def interrupted(self) -> bool:
        return bool(self.manifest.get("interrupted"))

    @property
    def empty(self) -> bool:
        """No request was measured (none recorded, or all of them during the warm-up)."""
        return self.summary.empty

    def describe_empty(self) -> str:
        """Why an empty run is empty, in one line."""
        n = len(self.samples)
        how = "interrupted" if self.interrupted else "finished"
        if n == 0:
            return f"This run {how} before any request was recorded: nothing to summarize."
        return (
            f"This run {how} before any request passed the warm-up: all {n} recorded requests "
            "were warm-up, nothing to summarize (the samples are saved)."
        )

    def table(self) -> pd.DataFrame:
        return self.summary[[c for c in TABLE_COLUMNS if c in self.summary.columns]]

    def _repr_html_(self) -> str:
        if self.empty:
            return f"<p>{self.describe_empty()}</p>"
        return str(self.table().to_html(index=False, float_format=lambda x: f"{x:.2f}"))
