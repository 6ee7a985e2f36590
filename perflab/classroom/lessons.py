"""Small helpers the walkthrough notebooks call, so the notebooks stay narration plus a few calls.

Everything here works on real parts (a running service, a run's frames) and is tested in
tests/perflab/classroom/test_lessons.py.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import matplotlib.pyplot as plt
import pandas as pd

from perflab import paths, stats
from perflab.errors import LabError

if TYPE_CHECKING:
    from perflab.lab import Lab
    from perflab.results import Run

DIAGNOSTIC_HEADERS = ("x-request-id", "server-timing", "x-db-queries", "x-cache")


def setup_checks(lab: Lab) -> pd.DataFrame:
    """What a student's machine needs, checked for real: one row per check (ok, detail)."""
    rows: list[dict] = []

    def add(check: str, ok: bool, detail: str) -> None:
        rows.append({"check": check, "ok": bool(ok), "detail": detail})

    add("python >= 3.11", sys.version_info >= (3, 11), sys.version.split()[0])
    for mod in ("fastapi", "sqlalchemy", "redis", "pandas", "matplotlib", "nbclient"):
        try:
            m = importlib.import_module(mod)
            add(f"import {mod}", True, str(getattr(m, "__version__", "")))
        except ImportError as exc:
            add(f"import {mod}", False, str(exc))
    out = subprocess.run(
        [sys.executable, "-m", "locust", "--version"], capture_output=True, text=True, timeout=60
    )
    add("locust runs (as a subprocess)", out.returncode == 0, (out.stdout or out.stderr).strip())
    try:
        info = lab.ensure_data()
        add("dataset", True, f"{info.get('products')} products in {lab.database_url}")
    except Exception as exc:
        add("dataset", False, str(exc).splitlines()[0])
    try:
        import redis

        redis.Redis.from_url(lab.redis_url, socket_connect_timeout=3).ping()
        add("redis answers PING", True, lab.redis_source)
    except Exception as exc:
        add("redis answers PING", False, str(exc).splitlines()[0])
    try:
        with lab.service("catalog", label="setup-check") as svc:
            r = httpx.get(svc.url + "/healthz", timeout=5, trust_env=False)
            add("catalog answers /healthz", r.status_code == 200, f"{svc.url}: {r.text}")
    except Exception as exc:
        add("catalog answers /healthz", False, str(exc).splitlines()[0])
    add("redis-server binary on PATH", shutil.which("redis-server") is not None, "optional")
    return pd.DataFrame(rows)


def diagnostics(resp: httpx.Response) -> dict[str, Any]:
    """Status and the diagnostic headers every perflab service adds to a response."""
    out: dict[str, Any] = {"status": resp.status_code}
    for h in DIAGNOSTIC_HEADERS:
        out[h] = resp.headers.get(h)
    return out


def probe(
    url: str, requests: Iterable[tuple[str, str, Any]], headers: dict[str, str] | None = None
) -> pd.DataFrame:
    """Send (method, path, json) requests; one row each: status, JSON or not, traceback leaked.

    `headers` go with every request: an editor's `Authorization`, so a hostile write body is
    judged by validation rather than stopped at the door with a 401.
    """
    rows = []
    with httpx.Client(base_url=url, timeout=10, trust_env=False, headers=headers) as client:
        for method, path, body in requests:
            r = client.request(method, path, json=body)
            rows.append(
                {
                    "request": f"{method} {path}" + (f" {str(body)[:40]}" if body else ""),
                    "status": r.status_code,
                    "json": r.headers.get("content-type", "").startswith("application/json"),
                    "traceback_leaked": "Traceback" in r.text,
                    "body": r.text[:80],
                }
            )
    return pd.DataFrame(rows)


def counter_rate(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per-second rate of a scraped counter, summed over its labels, per variant."""
    m = metrics[metrics["metric"] == metric]
    if m.empty:
        return pd.DataFrame(columns=["variant", "seconds", "rate"])
    frames = []
    for variant, g in m.groupby("variant", sort=False):
        total = g.groupby("t")["value"].sum().sort_index()
        rate = total.diff() / total.index.to_series().diff()
        t = total.index - total.index.min()
        frames.append(pd.DataFrame({"variant": variant, "seconds": t, "rate": rate.to_numpy()}))
    return pd.concat(frames, ignore_index=True).dropna()


def metric_timeline(metrics: pd.DataFrame, metric: str, ylabel: str) -> plt.Figure:
    """A scraped counter as a rate over time, one line per variant (what a dashboard shows)."""
    fig, ax = plt.subplots(figsize=(8, 4))
    for variant, g in counter_rate(metrics, metric).groupby("variant", sort=False):
        ax.plot(g["seconds"], g["rate"], lw=2, label=str(variant))
    ax.set_xlabel("seconds since the first scrape")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{metric} (rate, from /metrics scraped each second)")
    ax.legend()
    fig.tight_layout()
    return fig


def perf_gate(
    comparison: pd.DataFrame, statistic: str = "p95", margin: float = 0.0
) -> pd.DataFrame:
    """A CI-style gate: each variant passes unless it is *significantly* slower than baseline
    by more than `margin` (the rule of `perflab compare --fail-if-slower`, `stats.regressions`)."""
    c = comparison[comparison["statistic"] == statistic].copy()
    c["passes"] = ~c.index.isin(stats.regressions(c, margin).index)
    return c[["experiment", "baseline", "variant", "statistic", "ratio", "verdict", "passes"]]


# --- narration that reads its numbers from the run it describes -------------------------------
# A markdown cell that says "6x faster" is true on the day it was written; these sentences are
# computed from the run on screen, so the words and the table cannot disagree.


def provenance(run: Run) -> str:
    """Where a run's numbers come from: run id, date, commit, machine."""
    m = run.manifest
    commit = (m.get("git_commit") or "unknown commit")[:10]
    date = str(m.get("started_at", ""))[:16].replace("T", " ")
    return (
        f"run {m.get('run_id', run.path.name)} ({date} UTC, commit {commit}, "
        f"{m.get('cpu_count')} CPUs, Python {m.get('python')})"
    )


def measured_value(run: Run, experiment: str, variant: str, column: str) -> float:
    """One number of a run's summary (`p50_ms`, `rps`, `cache_hit_ratio`...), for narration."""
    s = run.summary
    rows = s[(s["experiment"] == experiment) & (s["variant"] == variant)]
    if rows.empty:
        raise LabError(f"the run has no {experiment}/{variant} (variants: {_variants(s)})")
    if column not in rows.columns:
        raise LabError(f"the summary has no column {column!r}")
    return float(rows[column].iloc[0])


def _variants(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "none"
    pairs = zip(frame["experiment"], frame["variant"], strict=True)
    return ", ".join(sorted({f"{e}/{v}" for e, v in pairs}))


def _times(ratio: float) -> str:
    if ratio >= 1:
        return f"{ratio:.2f}x faster"
    return f"{1 / max(ratio, 1e-12):.2f}x slower"


def comparison(
    run: Run, experiment: str, statistics: Sequence[str] = ("p50", "p95")
) -> pd.DataFrame:
    """Each variant of `experiment` against its baseline on `statistics`, with 95% CIs.

    The run's saved comparison when it holds them (p50, p95), else computed from its samples
    the same way (`stats.compare_variants`), so `"rps"` and `"p99"` get intervals too.
    """
    c = run.comparison
    saved = c[(c["experiment"] == experiment) & c["statistic"].isin(list(statistics))]
    if set(saved["statistic"]) == set(statistics):
        return saved.reset_index(drop=True)
    entry = run.manifest.get("experiments", {}).get(experiment)
    if entry is None:
        raise LabError(f"the run has no experiment {experiment!r} (it has {_variants(c)})")
    m = stats.measured(run.samples)
    m = m[m["experiment"] == experiment]
    out = stats.compare_variants(m, entry["baseline"], list(entry["variants"]), statistics)
    return out.assign(experiment=experiment)[["experiment", *stats.COMPARE_COLUMNS]]


def effect(run: Run, experiment: str, variant: str, statistic: str = "p50") -> str:
    """One sentence: how `variant` compares with the experiment's baseline, with its 95% CI.

    "optimized vs naive on p50: 6.20x faster (95% CI 5.10x faster to 7.00x faster): the whole
    interval is on one side of 1, so the difference is real on this machine."
    """
    c = comparison(run, experiment, [statistic])
    rows = c[c["variant"] == variant]
    if rows.empty:
        raise LabError(
            f"the run compared no {experiment}/{variant} on {statistic} "
            f"(compared: {_variants(run.comparison)})"
        )
    row = rows.iloc[0]
    ratio, lo, hi = float(row["ratio"]), float(row["ci_low"]), float(row["ci_high"])
    head = f"{variant} vs {row['baseline']} on {statistic}"
    if ratio != ratio:  # NaN: too few samples to compare
        return f"{head}: not enough requests were measured to compare."
    interval = f"95% CI {_ratio_interval(lo, hi)}"
    if lo > 1 or hi < 1:
        why = "the whole interval is on one side of 1, so the difference is real on this machine"
    else:
        why = "the interval includes 1: no difference this run can tell from noise"
    return f"{head}: {_times(ratio)} ({interval}): {why}."


def effects(
    run: Run, experiment: str | None = None, statistics: Sequence[str] = ("p50", "p95")
) -> pd.DataFrame:
    """Comparisons of a run as a tidy table: what changed, by how much, with its CI."""
    names = [experiment] if experiment else list(run.manifest.get("experiments", {}))
    frames = [comparison(run, name, statistics) for name in names]
    c = pd.concat(frames, ignore_index=True) if frames else run.comparison.iloc[0:0]
    out = c.assign(
        change=[_times(r) if r == r else "n/a" for r in c["ratio"]],
        ci=[_ratio_interval(lo, hi) for lo, hi in zip(c["ci_low"], c["ci_high"], strict=True)],
    )
    return out[["experiment", "baseline", "variant", "statistic", "change", "ci", "verdict"]]


def _ratio_interval(lo: float, hi: float) -> str:
    """A ratio's interval in words, smaller effect first: "4.46x to 5.44x slower"."""
    if lo != lo or hi != hi:
        return "n/a"
    if lo >= 1:
        return f"{lo:.2f}x to {hi:.2f}x faster"
    if hi < 1:
        return f"{1 / hi:.2f}x to {1 / max(lo, 1e-12):.2f}x slower"
    return f"{1 / max(lo, 1e-12):.2f}x slower to {hi:.2f}x faster"


def _interval(lo: float, hi: float, fmt: Callable[[float], str]) -> str:
    return f"{fmt(lo)} .. {fmt(hi)}"


def _intervals(summary: pd.DataFrame, p: str) -> list[str]:
    lows, highs = summary[f"{p}_ci_low"], summary[f"{p}_ci_high"]
    return [_interval(a, b, "{:.3f}".format) for a, b in zip(lows, highs, strict=True)]


def ci_table(run: Run, experiment: str) -> pd.DataFrame:
    """An experiment's variants side by side: throughput and p50/p99 with their 95% CIs."""
    s = run.summary[run.summary["experiment"] == experiment]
    return pd.DataFrame(
        {
            "variant": s["variant"],
            "requests": s["requests"],
            "rps": s["rps"].round(0),
            "rps_sd": s["rps_sd"].round(0),
            "p50_ms": s["p50_ms"].round(3),
            "p50_95%_CI": _intervals(s, "p50"),
            "p99_ms": s["p99_ms"].round(3),
            "p99_95%_CI": _intervals(s, "p99"),
            "error_rate": s["error_rate"],
        }
    ).reset_index(drop=True)


# The runs the walkthrough saves, by the name each notebook gives its run, in course order.
COURSE_RUNS = {
    "quickstart": "00_quickstart",
    "nb13-gateway": "13_monolith_vs_microservices",
    "nb12-frameworks": "12_frameworks",
    "nb04-cost": "04_logging_and_monitoring",
    "nb05": "05_query_optimization",
    "nb06": "06_caching",
    "nb07-tls": "07_security",
    "nb09-gate": "09_deploy_and_ci",
}


def latest_run(name: str, root: Path | None = None) -> Run | None:
    """The newest finished run a notebook saved under `name` (folders `<stamp>-<name>`)."""
    from perflab.results import Run

    root = root or paths.RESULTS
    # `<date>-<time>-<name>`, or `...-<name>-2` for a second run in the same second.
    pattern = re.compile(rf"(\d{{8}}-\d{{6}})-{re.escape(name)}(?:-(\d+))?")
    found = sorted(
        ((m[1], int(m[2] or 1)), p)
        for p in root.glob(f"*-{name}*")
        if (m := pattern.fullmatch(p.name)) and (p / "summary.csv").exists()
    )
    return Run.load(found[-1][1]) if found else None


def course_effects(
    runs: dict[str, str] | None = None,
    statistics: Sequence[str] = ("p50", "rps"),
    root: Path | None = None,
) -> pd.DataFrame:
    """Every effect the student measured in the course, from their own saved runs: one row per
    comparison, with the notebook and the run it came from; a notebook not run yet says so."""
    rows: list[dict[str, Any]] = []
    for name, notebook in (runs or COURSE_RUNS).items():
        run = latest_run(name, root)
        if run is None:
            rows.append({"notebook": notebook, "run": f"not run yet (no saved '{name}' run)"})
            continue
        table = effects(run, statistics=statistics)
        for r in table.to_dict("records"):
            rows.append(
                {"notebook": notebook, "run": run.path.name, **{str(k): v for k, v in r.items()}}
            )
    columns = ["notebook", "experiment", "baseline", "variant", "statistic", "change", "ci"]
    return pd.DataFrame(rows).reindex(columns=[*columns, "verdict", "run"])


def ci_script() -> str:
    """The project's CI entry point, to read in the deployment notebook."""
    path = paths.ROOT / ".ci" / "run"
    return path.read_text() if path.exists() else "(no .ci/run in this checkout)"
