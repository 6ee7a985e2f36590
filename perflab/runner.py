"""Run experiments: variants × repetitions, interleaved, saved as a run folder.

Variants run interleaved (A B, then B A on the next repetition), not all of one then all of
the other, so machine drift (thermal, other load) does not masquerade as an effect. Each
variant gets a fresh service process; its /metrics is scraped every second and its JSON log
is collected. A variant that cannot start (no Redis, say) is reported in one line and the
others still run. Ctrl-C (or a notebook's interrupt) stops the run and keeps what it measured.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from perflab import plots, report, results, stats
from perflab.analysis import read_logs
from perflab.errors import LabError
from perflab.experiments import Experiment
from perflab.lab import Lab
from perflab.loadgen import LoadProfile, dataset_config, run_load
from perflab.scrape import MetricsScraper


@dataclass
class Run:
    """What a run produced; `path` is its folder. Shows as the summary table in notebooks."""

    path: Path
    summary: pd.DataFrame
    comparison: pd.DataFrame
    samples: pd.DataFrame
    metrics: pd.DataFrame
    logs: pd.DataFrame
    manifest: dict
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def interrupted(self) -> bool:
        return bool(self.manifest.get("interrupted"))

    def table(self) -> pd.DataFrame:
        cols = [
            c
            for c in (
                "experiment",
                "variant",
                "endpoint",
                "requests",
                "failures",
                "rps",
                "p50_ms",
                "p95_ms",
                "p99_ms",
                "cache_hit_ratio",
                "db_queries_mean",
            )
            if c in self.summary.columns
        ]
        return self.summary[cols]

    def _repr_html_(self) -> str:
        return self.table().to_html(index=False, float_format=lambda x: f"{x:.2f}")


def _read_log(path: Path) -> list[dict]:
    """A service's JSON log lines as dicts (unparsable lines skipped)."""
    return read_logs(path).to_dict("records")


def run_experiments(
    experiments: list[Experiment],
    *,
    lab: Lab | None = None,
    profile: LoadProfile | None = None,
    quick: bool = False,
    repeat: int = 1,
    name: str | None = None,
    progress: bool = True,
    echo: bool = True,
) -> Run:
    """Run each experiment's variants under load and save everything to one run folder."""
    if repeat < 1:
        raise LabError("repeat must be at least 1")
    own_lab = lab is None
    lab = lab or Lab()
    run_dir = results.new_run_dir(name or "-".join(e.name for e in experiments))
    raw_dir = run_dir / "raw"
    log_dir = run_dir / "logs"
    started = results.now()
    manifest: dict = {
        "run_id": run_dir.name,
        "started_at": results.iso(started),
        "experiments": {},
        "repeat": repeat,
        "quick": quick,
        **results.environment(),
    }
    frames: list[pd.DataFrame] = []
    metric_rows: list[dict] = []
    log_rows: list[dict] = []
    errors: dict[str, str] = {}
    interrupted = False

    def say(msg: str) -> None:
        if echo:
            print(msg, flush=True)

    try:
        dataset = lab.ensure_data()
        manifest["dataset"] = dataset
        manifest["database"] = lab.database_url.split("://")[0]
        for exp in experiments:
            prof = profile or (exp.quick_profile if quick else exp.profile)
            prof.validate()
            manifest["experiments"][exp.name] = {
                "title": exp.title,
                "question": exp.question,
                "baseline": exp.baseline,
                "profile": asdict(prof),
                "mix": [asdict(e) for e in exp.mix],
                "variants": {},
            }
            for rep in range(repeat):
                order = exp.variants if rep % 2 == 0 else list(reversed(exp.variants))
                for variant in order:
                    key = f"{exp.name}/{variant.name}"
                    if key in errors:
                        continue
                    label = f"{exp.name}-{variant.name}-r{rep}"
                    say(
                        f"[{exp.name}] {variant.name} (repeat {rep + 1}/{repeat}): "
                        f"{prof.model} model, {prof.duration:g} s"
                    )
                    try:
                        svc = lab.service(
                            exp.service_for(variant),
                            label=label,
                            log_dir=log_dir,
                            **variant.settings,
                        )
                    except LabError as exc:
                        errors[key] = str(exc).splitlines()[0]
                        say(f"  ! {key} skipped: {errors[key]}")
                        continue
                    manifest["experiments"][exp.name]["variants"][variant.name] = {
                        "settings": variant.settings,
                        "env": {k: v for k, v in svc.env.items() if "URL" not in k},
                    }
                    scraper = MetricsScraper(svc.url).start()
                    try:
                        result = run_load(
                            svc.url,
                            exp.mix,
                            prof,
                            raw_dir,
                            label=label,
                            progress=progress,
                            ca_file=svc.ca_file,
                            extra_config=dataset_config(dataset),
                        )
                    finally:
                        rows = scraper.stop()
                        svc.stop()
                    for r in rows:
                        r.update(experiment=exp.name, variant=variant.name, repeat=rep)
                    metric_rows.extend(rows)
                    for r in _read_log(svc.log_file):
                        r.update(experiment=exp.name, variant=variant.name, repeat=rep)
                        log_rows.append(r)
                    df = result.samples.assign(
                        experiment=exp.name,
                        variant=variant.name,
                        repeat=rep,
                        warmup_s=prof.warmup,
                    )
                    frames.append(df)
                    if result.interrupted:
                        interrupted = True
                        raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: stopping services and saving what was measured so far")
    finally:
        if own_lab:
            lab.close()
    manifest["redis"] = lab.redis_source
    manifest["ended_at"] = results.iso(results.now())
    manifest["interrupted"] = interrupted
    manifest["errors"] = errors
    run = finalize(run_dir, frames, metric_rows, log_rows, manifest, experiments)
    run.errors = errors
    if echo:
        say(f"\nSaved to {run_dir}")
    return run


def finalize(
    run_dir: Path,
    frames: list[pd.DataFrame],
    metric_rows: list[dict],
    log_rows: list[dict],
    manifest: dict,
    experiments: list[Experiment],
) -> Run:
    """Compute statistics and write every file of the results contract."""
    samples = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    summaries, comparisons = [], []
    if not samples.empty:
        for exp in experiments:
            s = samples[samples["experiment"] == exp.name]
            if s.empty:
                continue
            warmup = float(s["warmup_s"].iloc[0])
            m = stats.measured(s, warmup)
            open_model = manifest["experiments"][exp.name]["profile"]["model"] == "open"
            summaries.append(stats.summarize(m, ["experiment", "variant", "endpoint"], open_model))
            for v in exp.variants[1:]:
                if (m["variant"] == v.name).any() and (m["variant"] == exp.baseline).any():
                    for p in (50, 95):
                        comparisons.append(
                            {"experiment": exp.name, **stats.compare(m, exp.baseline, v.name, p)}
                        )
    summary = (
        pd.concat(summaries, ignore_index=True)
        if summaries
        else pd.DataFrame(
            columns=[
                "experiment",
                "variant",
                "endpoint",
                "requests",
                "failures",
                "rps",
                "p50_ms",
                "p95_ms",
                "p99_ms",
            ]
        )
    )
    comparison = pd.DataFrame(comparisons)
    metrics = pd.DataFrame(metric_rows)
    logs = pd.DataFrame(log_rows)
    results.write_table(summary, run_dir / "summary.csv")
    results.write_table(comparison, run_dir / "comparison.csv")
    results.write_table(metrics, run_dir / "metrics.csv")
    if not samples.empty:
        samples.to_csv(run_dir / "samples.csv.gz", index=False, compression="gzip")
    with (run_dir / "logs.jsonl").open("w") as f:
        for r in log_rows:
            f.write(json.dumps(r, default=str) + "\n")
    results.write_manifest(run_dir, manifest)
    run = Run(run_dir, summary, comparison, samples, metrics, logs, manifest)
    manifest["plots"] = plots.save_all(run, run_dir / "plots")
    results.write_manifest(run_dir, manifest)
    report.write(run, run_dir / "report.html")
    return run
