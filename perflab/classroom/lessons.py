"""Small helpers the walkthrough notebooks call, so the notebooks stay narration plus a few calls.

Everything here works on real parts (a running service, a run's frames) and is tested in
tests/perflab/classroom/test_lessons.py.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpx
import matplotlib.pyplot as plt
import pandas as pd

from perflab import paths, stats

if TYPE_CHECKING:
    from perflab.lab import Lab

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


def ci_script() -> str:
    """The project's CI entry point, to read in the deployment notebook."""
    path = paths.ROOT / ".ci" / "run"
    return path.read_text() if path.exists() else "(no .ci/run in this checkout)"
