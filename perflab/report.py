"""report.html: one self-contained page (plots inlined) with a run's tables and plots.

`publish(run)` renders a finished run: its plots into `plots/`, then this page. It sits above
`perflab.results` (which writes only data), so the results layer stays free of matplotlib and
a run's data is saved even when rendering fails; `perflab report RUN` renders again.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import pandas as pd

from perflab import analysis, plots, profiling, traces
from perflab.errors import LabError
from perflab.results import Run

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; margin: 0.5rem 0; } .warn { color: #a40; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def _table(df: pd.DataFrame | None) -> str:
    if df is None or df.empty:
        return "<p>(empty)</p>"
    return df.to_html(index=False, float_format=lambda x: f"{x:.3f}", border=0)


def _time_split(run: Run, experiment: str, spans: pd.DataFrame) -> str:
    """Where a typical request's time went (client wait, network, app, db, cache): each request
    split from its own spans (else its log line), then the requests around the median averaged;
    and the slowest traced requests."""
    samples = (
        run.samples[run.samples["experiment"] == experiment] if not run.samples.empty else None
    )
    if samples is None or samples.empty:
        return ""
    exp_spans = spans[spans["experiment"] == experiment] if "experiment" in spans else spans
    joined = traces.join_spans(samples, exp_spans)
    source = "their spans (spans.jsonl)"
    if joined.empty and not run.logs.empty:
        joined = analysis.join_requests(samples, run.logs)
        source = "the service log"
    if joined.empty:
        return ""
    split = traces.typical_split(joined, ("variant", "endpoint"))
    out = (
        f"<p>Where the time went: {len(joined)} requests joined to {source} on request id, "
        "each split on its own (network = client round trip - server time; app = server time "
        "- db - cache), then the requests between the 45th and 55th latency percentile "
        "averaged, so the parts add up; ms, warm-up included.</p>" + _table(split)
    )
    if "spans" in joined.columns:
        out += "<p>The slowest traced requests (request id = trace id in spans.jsonl):</p>"
        out += _table(traces.slowest(joined, 5))
    return out


def _profiles(run: Run, experiment: str) -> str:
    """Where the time goes (`perflab run --profile`): per variant, the tables and flame graph."""
    parts = []
    for e in profiling.run_profiles(run.path, run.manifest):
        if e.get("experiment") != experiment:
            continue
        parts.append(
            f"<h3>Where the time goes: {html.escape(str(e['variant']))} "
            f"(repeat {int(e['repeat']) + 1})</h3><p>{html.escape(str(e['note']))}</p>"
        )
        speedscope = e["speedscope"]
        if speedscope is None or not speedscope.exists():
            continue
        grouped = profiling.groups(speedscope).sort_values("self_pct", ascending=False)
        parts.append("<p>Self time by group, % of the profiled wall time:</p>" + _table(grouped))
        parts.append(
            "<p>Top functions by self time (total: with what they call):</p>"
            + _table(profiling.table(speedscope))
        )
        if e["svg"] is not None and e["svg"].exists():
            parts.append(f"<div style='overflow-x:auto'>{e['svg'].read_text()}</div>")
        parts.append(
            f"<p>Open <code>{html.escape(str(speedscope.relative_to(run.path)))}</code> at "
            "https://www.speedscope.app to explore it.</p>"
        )
    return "\n".join(parts)


def write(run: Run, path: Path) -> Path:
    m = run.manifest
    parts = [f"<h1>perflab run {html.escape(m.get('run_id', ''))}</h1>"]
    parts.append(
        f"<p>Started {html.escape(str(m.get('started_at')))}, ended "
        f"{html.escape(str(m.get('ended_at')))}; git {html.escape(str(m.get('git_commit')))}; "
        f"{m.get('cpu_count')} CPUs; Python {html.escape(str(m.get('python')))}; database "
        f"{html.escape(str(m.get('database')))}; Redis {html.escape(str(m.get('redis')))}.</p>"
    )
    if m.get("interrupted"):
        parts.append("<p class=warn>This run was interrupted: it holds what was measured.</p>")
    if run.empty:
        parts.append(f"<p class=warn>{html.escape(run.describe_empty())}</p>")
    for key, msg in run.errors.items():
        parts.append(f"<p class=warn>{html.escape(key)} did not run: {html.escape(msg)}</p>")
    spans = traces.read_spans(run)
    for name, exp in (m.get("experiments") or {}).items():
        parts.append(f"<h2>{html.escape(exp.get('title', name))}</h2>")
        parts.append(
            f"<p>{html.escape(exp.get('question', ''))} Load: "
            f"<code>{html.escape(json.dumps(exp.get('profile')))}</code></p>"
        )
        if not run.summary.empty:
            parts.append(_table(run.summary[run.summary["experiment"] == name]))
        if not run.comparison.empty:
            parts.append(_table(run.comparison[run.comparison["experiment"] == name]))
        parts.append(_time_split(run, name, spans))
        for rel in m.get("plots", []):
            if Path(rel).name.startswith(f"{name}-"):
                png = (path.parent / rel).read_bytes()
                data = base64.b64encode(png).decode()
                parts.append(f'<img alt="{html.escape(rel)}" src="data:image/png;base64,{data}">')
        parts.append(_profiles(run, name))
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>perflab "
        f"{html.escape(m.get('run_id', ''))}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path


def publish(run: Run) -> Path:
    """Render a finished run: plots (listed in its manifest), then report.html; returns its path.

    A folder that cannot take them is one `LabError` line: the run's data is already saved.
    """
    try:
        run.manifest["plots"] = plots.save_all(run, run.path / "plots")
        run.write_manifest()
        return write(run, run.path / "report.html")
    except OSError as exc:
        raise LabError(
            f"the run's data is saved in {run.path}, but its plots and report could not be "
            f"written ({exc.strerror or exc}); `perflab report {run.path}` writes them again"
        ) from None
