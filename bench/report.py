"""Result lines and the two files a bench run writes: `<date>.csv` and `<date>.md`.

Every line carries the measured value, the bar it is held to and the verdict ("pass",
"falls short", or "info" where there is no bar, "skipped" where the measurement was not run
and "error" when it could not be made). The markdown is meant to be pasted into the README as
it is, so it says when, where (CPU, Python, commit) and how (full or --quick) it was measured.
"""

from __future__ import annotations

import csv
import os
import platform
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from perflab import results

VERDICTS = ("pass", "falls short", "info", "skipped", "error")
COLUMNS = ["item", "topic", "measure", "value", "unit", "bar", "verdict", "detail"]


@dataclass
class Row:
    item: int
    topic: str
    measure: str
    value: float | None
    unit: str
    bar: str
    verdict: str
    detail: str = ""

    def shown_value(self) -> str:
        if self.value is None:
            return "n/a"
        v = self.value
        text = f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
        if self.unit in ("%",):
            text = f"{v:+.1f}"
        return f"{text} {self.unit}".strip() if self.unit not in ("x",) else f"{text}x"


def verdict_at_least(value: float | None, bar: float) -> str:
    if value is None or value != value:
        return "error"
    return "pass" if value >= bar else "falls short"


def verdict_at_most(value: float | None, bar: float) -> str:
    if value is None or value != value:
        return "error"
    return "pass" if value <= bar else "falls short"


def machine() -> dict[str, str]:
    model, cpus = "unknown", str(os.cpu_count())
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        load = "unknown"
    commit = results.code_version(7) or ""
    return {
        "cpu": f"{cpus} x {model}",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit or "unknown",
        "loadavg_at_start": load,
    }


def write(
    rows: list[Row], out_dir: Path, meta: dict[str, str], when: datetime | None = None
) -> tuple[Path, Path]:
    """Write `<date>.csv` and `<date>.md` into `out_dir`; returns their paths."""
    when = when or datetime.now()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = when.strftime("%Y-%m-%d")
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            d = asdict(r)
            d["value"] = "" if r.value is None else f"{r.value:.6g}"
            w.writerow(d)
    md_path.write_text(markdown(rows, meta, when))
    return csv_path, md_path


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[Row], meta: dict[str, str], when: datetime) -> str:
    passed = sum(r.verdict == "pass" for r in rows)
    short = sum(r.verdict == "falls short" for r in rows)
    lines = [
        f"### perflab measures itself ({when.strftime('%Y-%m-%d %H:%M')})",
        "",
        f"- machine: {meta['cpu']}, {meta['platform']}; load average at start "
        f"{meta['loadavg_at_start']}",
        f"- Python {meta['python']}, commit {meta['commit']}",
        f"- mode: {meta['mode']}; dataset `{meta['size']}`; wall time {meta['wall']}",
        f"- {passed} pass, {short} fall short, of {len(rows)} lines "
        "(made by `make bench`; each ratio is taken within one run)",
        "",
        "| # | Topic | Measure | Value | Bar | Verdict | Detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = f"**{r.verdict}**" if r.verdict == "falls short" else r.verdict
        lines.append(
            f"| {r.item} | {_cell(r.topic)} | {_cell(r.measure)} | {_cell(r.shown_value())} | "
            f"{_cell(r.bar)} | {verdict} | {_cell(r.detail)} |"
        )
    lines.append("")
    return "\n".join(lines)
