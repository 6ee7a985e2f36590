"""The CI workflow is real: it parses, runs lint, the fast tests, the whole suite, the package
check and the performance gate, and every command it names exists (a Makefile target, a perflab
subcommand, a script). That the gate fails on an injected regression is shown on real runs in
tests/perflab/test_compare_gate.py (`make perf-gate`, as this workflow calls it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from perflab.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def _runs(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][\w-]*):", text, flags=re.M))


def _subcommands() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)  # type: ignore[arg-type]


def test_the_workflow_runs_lint_tests_package_and_the_perf_gate() -> None:
    wf = _workflow()
    assert set(wf["on"]) == {"push", "pull_request"}
    jobs = wf["jobs"]
    assert {"lint", "test-fast", "test", "package", "perf-gate"} <= set(jobs)
    assert any(r.strip() == "make lint" for r in _runs(jobs["lint"]))
    assert any(r.strip() == "make test-fast" for r in _runs(jobs["test-fast"]))
    assert any(r.strip() == ".ci/run" for r in _runs(jobs["test"]))
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    # .ci/run looks for PostgreSQL (db test, trust) and Redis on 127.0.0.1: the job provides them
    services = jobs["test"]["services"]
    assert services["postgres"]["env"]["POSTGRES_DB"] == "test"
    assert services["postgres"]["ports"] == ["5432:5432"]
    assert services["redis"]["ports"] == ["6379:6379"]
    package = "\n".join(_runs(jobs["package"]))
    assert "python -m build" in package and "demo --quick" in package
    gate = "\n".join(_runs(jobs["perf-gate"]))
    assert gate.count("make perf-run") == 2 and "perf-gate" in gate
    assert "pipefail" in gate  # the tee to the job summary must not hide the gate's exit code


def test_every_command_the_workflow_names_exists() -> None:
    text = "\n".join(r for job in _workflow()["jobs"].values() for r in _runs(job))
    targets = set(re.findall(r"\bmake\s+(?:(?:-C\s+\S+|--?[\w-]+)\s+)*([a-z][\w-]*)", text))
    assert {"lint", "test-fast", "install", "perf-run", "perf-gate"} <= targets
    assert targets <= _make_targets(), targets - _make_targets()
    used = set(re.findall(r"perflab\"?\s+([a-z][\w-]*)", text))
    assert used and used <= _subcommands(), used - _subcommands()
    for script in re.findall(r"(?:^|\s)(\.ci/[\w-]+)", text):
        path = ROOT / script
        assert path.is_file() and path.stat().st_mode & 0o111, script


def test_the_gate_target_is_perflab_compare_with_its_margin() -> None:
    dry = subprocess.run(
        ["make", "-s", "-n", "-C", str(ROOT), "perf-gate", "BASE=b", "NEW=n", "PERFLAB=perflab"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert 'perflab compare "b" "n" --fail-if-slower 10%' in dry.stdout, dry.stdout
    assert "--statistics p50,p95" in dry.stdout
    run = subprocess.run(
        ["make", "-s", "-n", "-C", str(ROOT), "perf-run", "PERFLAB=perflab"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert run.stdout.startswith("perflab run caching --variants none,memory"), run.stdout
    usage = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "perf-gate"], capture_output=True, text=True
    )
    assert usage.returncode != 0 and "usage: make perf-gate BASE=" in usage.stderr
