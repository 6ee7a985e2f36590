"""Plots of a run, readable on a classroom projector: labelled axes, units, large type.

Each function takes a `Run` (or its frames) and returns a matplotlib Figure: notebooks show it
inline, `save_all` writes PNGs into the run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

if not matplotlib.get_backend().lower().startswith(("module://", "nbagg", "ipympl")):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axis import Axis
from matplotlib.ticker import FuncFormatter

from perflab import traces

if TYPE_CHECKING:
    from perflab.results import Run

_PLAIN = FuncFormatter(lambda v, _pos: f"{v:g}")
_SPARSE = FuncFormatter(lambda v, _pos: f"{v:g}" if f"{v:e}"[0] in "25" else "")


def _plain_log_axis(axis: Axis) -> None:
    """Log scale with tick labels as plain numbers (5, 10, 20), not 10^x: easier to read."""
    axis.set_major_formatter(_PLAIN)
    axis.set_minor_formatter(_SPARSE)


plt.rcParams.update(
    {"font.size": 12, "axes.titlesize": 14, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 100}
)


def percentiles(summary: pd.DataFrame, experiment: str) -> plt.Figure:
    """p50/p95/p99 per variant, with bootstrap 95% intervals as error bars (log scale)."""
    s = summary[summary["experiment"] == experiment]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / 3
    x = np.arange(len(s))
    for i, p in enumerate((50, 95, 99)):
        vals = s[f"p{p}_ms"].to_numpy()
        lo = vals - s.get(f"p{p}_ci_low", pd.Series(vals)).to_numpy()
        hi = s.get(f"p{p}_ci_high", pd.Series(vals)).to_numpy() - vals
        ax.bar(
            x + (i - 1) * width,
            vals,
            width,
            yerr=np.nan_to_num([lo, hi]).clip(0),
            capsize=3,
            label=f"p{p}",
        )
    ax.set_xticks(x, [f"{v}\n{e}" for v, e in zip(s["variant"], s["endpoint"], strict=True)])
    ax.set_xlabel("variant / endpoint")
    ax.set_yscale("log")
    _plain_log_axis(ax.yaxis)
    ax.set_ylabel("latency (ms, log scale)")
    ax.set_title(f"{experiment}: latency percentiles (95% CI)")
    ax.legend()
    fig.tight_layout()
    return fig


def cdf(samples: pd.DataFrame, experiment: str) -> plt.Figure:
    """Latency CDF per variant on a log axis: where every request landed, not one number."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    s = samples[samples["experiment"] == experiment]
    for variant, g in s.groupby("variant", sort=False):
        lat = np.sort(g["latency_ms"].to_numpy(dtype=float))
        ax.plot(lat, np.arange(1, len(lat) + 1) / len(lat), label=str(variant), lw=2)
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis)
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests")
    ax.set_title(f"{experiment}: latency CDF")
    ax.legend()
    fig.tight_layout()
    return fig


def timeline(samples: pd.DataFrame, experiment: str, bin_s: float = 1.0) -> plt.Figure:
    """Throughput and p95 over time per variant (time since each variant's load started)."""
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    s = samples[samples["experiment"] == experiment]
    for variant, g in s.groupby("variant", sort=False):
        g = g[g["repeat"] == g["repeat"].min()]
        t = g["t_intended"] - g["t_intended"].min()
        b = (t // bin_s) * bin_s
        a1.plot(g.groupby(b).size() / bin_s, label=str(variant), lw=2)
        a2.plot(g.groupby(b)["latency_ms"].quantile(0.95), label=str(variant), lw=2)
    a1.set_ylabel("requests/s")
    a2.set_ylabel("p95 latency (ms, log scale)")
    a2.set_yscale("log")
    _plain_log_axis(a2.yaxis)
    a2.set_xlabel("seconds since load start (first repetition; warm-up included)")
    a1.set_title(f"{experiment}: throughput and p95 over time")
    a1.legend()
    fig.tight_layout()
    return fig


def db_queries(samples: pd.DataFrame, experiment: str) -> plt.Figure | None:
    s = samples[samples["experiment"] == experiment]
    q = pd.to_numeric(s["x_db_queries"], errors="coerce")
    if q.isna().all():
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    means = q.groupby(s["variant"], sort=False).mean()
    ax.bar(means.index.astype(str), means.to_numpy())
    ax.set_xlabel("variant")
    ax.set_ylabel("SQL statements per request (mean)")
    ax.set_title(f"{experiment}: database queries per request")
    fig.tight_layout()
    return fig


def cache_hits(samples: pd.DataFrame, experiment: str, bin_s: float = 1.0) -> plt.Figure | None:
    s = samples[samples["experiment"] == experiment]
    looked = s[s["x_cache"].isin(["hit", "miss"])]
    if looked.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 4))
    for variant, g in looked.groupby("variant", sort=False):
        g = g[g["repeat"] == g["repeat"].min()]
        t = g["t_intended"] - g["t_intended"].min()
        ratio = (g["x_cache"] == "hit").groupby((t // bin_s) * bin_s).mean()
        ax.plot(ratio, label=str(variant), lw=2)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("cache hit ratio")
    ax.set_xlabel("seconds since load start")
    ax.set_title(f"{experiment}: cache hit ratio over time")
    ax.legend()
    fig.tight_layout()
    return fig


def error_rate(samples: pd.DataFrame, experiment: str, bin_s: float = 1.0) -> plt.Figure:
    """Share of failed requests (non-2xx/3xx, timeouts, refused connections) per second."""
    fig, ax = plt.subplots(figsize=(8, 4))
    s = samples[samples["experiment"] == experiment]
    for variant, g in s.groupby("variant", sort=False):
        g = g[g["repeat"] == g["repeat"].min()]
        t = g["t_intended"] - g["t_intended"].min()
        failed = (~g["ok"].astype(bool)).groupby((t // bin_s) * bin_s).mean() * 100
        ax.plot(failed, label=str(variant), lw=2, marker=".")
    ax.set_ylim(bottom=0, top=max(5.0, ax.get_ylim()[1]))
    ax.set_xlabel("seconds since load start (first repetition; warm-up included)")
    ax.set_ylabel("failed requests (%)")
    ax.set_title(f"{experiment}: error rate over time")
    ax.legend()
    fig.tight_layout()
    return fig


def _series(metrics: pd.DataFrame, name: str) -> pd.DataFrame:
    """One metric summed over its labels, per (variant, scrape time), first repetition only."""
    m = metrics[metrics["metric"] == name]
    if m.empty:
        return m
    m = m[m["repeat"] == m.groupby("variant")["repeat"].transform("min")]
    return m.groupby(["variant", "t"], sort=False)["value"].sum().reset_index()


def _rate(g: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(t, per-second rate) of a counter from successive scrapes; a restart's drop is skipped."""
    d = g["value"].diff() / g["t"].diff()
    keep = d >= 0
    return g["t"][keep], d[keep]


def service_metrics(metrics: pd.DataFrame, experiment: str) -> plt.Figure | None:
    """What the service said about itself (its /metrics, scraped every second): requests/s
    from the `http_requests_total` counter, CPU from `process_cpu_seconds_total`, memory (RSS).
    """
    if metrics is None or metrics.empty or "experiment" not in metrics.columns:
        return None
    m = metrics[metrics["experiment"] == experiment]
    panels = [  # (metric, axis label, is a counter, scale)
        ("http_requests_total", "requests/s (server)", True, 1.0),
        ("process_cpu_seconds_total", "CPU (% of one core)", True, 100.0),
        ("process_resident_memory_bytes", "RSS (MiB)", False, 2**-20),
    ]
    panels = [p for p in panels if not _series(m, p[0]).empty]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels) + 0.6), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, (name, ylabel, counter, scale) in zip(axes, panels, strict=True):
        for variant, g in _series(m, name).groupby("variant", sort=False):
            g = g.sort_values("t")
            t, y = _rate(g) if counter else (g["t"], g["value"])
            ax.plot(t - g["t"].min(), y * scale, label=str(variant), lw=2)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
    axes[-1].set_xlabel("seconds since the first scrape (first repetition)")
    axes[0].set_title(f"{experiment}: the service's own metrics (/metrics, every second)")
    axes[0].legend()
    fig.tight_layout()
    return fig


def slowest_trace(samples: pd.DataFrame, spans: pd.DataFrame, experiment: str) -> plt.Figure | None:
    """The waterfall of the experiment's slowest traced request (None without spans)."""
    if spans.empty or "experiment" not in spans.columns:
        return None
    mine = spans[spans["experiment"] == experiment]
    joined = traces.join_spans(samples[samples["experiment"] == experiment], mine)
    if joined.empty:
        return None
    slow = traces.slowest(joined, 1).iloc[0]
    rows = min(int(slow["spans"]), 40)
    fig, ax = plt.subplots(figsize=(10, 0.28 * rows + 2))
    traces.waterfall(mine, str(slow["request_id"]), ax, max_rows=40)
    ax.set_title(
        f"{experiment}: the slowest traced request ({slow['variant']}, "
        f"{slow['latency_ms']:.1f} ms at the client)\n{ax.get_title()}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def figures(run: Run) -> dict[str, plt.Figure]:
    out: dict[str, plt.Figure] = {}
    if run.samples.empty:
        return out
    spans = traces.read_spans(run)
    for exp in run.summary["experiment"].unique():
        fig = slowest_trace(run.samples, spans, exp)
        if fig is not None:
            out[f"{exp}-slowest-trace"] = fig
        out[f"{exp}-percentiles"] = percentiles(run.summary, exp)
        out[f"{exp}-cdf"] = cdf(run.samples, exp)
        out[f"{exp}-timeline"] = timeline(run.samples, exp)
        out[f"{exp}-errors"] = error_rate(run.samples, exp)
        fig = service_metrics(run.metrics, exp)
        if fig is not None:
            out[f"{exp}-metrics"] = fig
        for name, fn in (("db-queries", db_queries), ("cache-hits", cache_hits)):
            fig = fn(run.samples, exp)
            if fig is not None:
                out[f"{exp}-{name}"] = fig
    return out


def save_all(run: Run, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for name, fig in figures(run).items():
        fig.savefig(folder / f"{name}.png", dpi=110)
        plt.close(fig)
        names.append(f"plots/{name}.png")
    return names
