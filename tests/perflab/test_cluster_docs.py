"""docs/cluster.md's commands are ones a user can paste: every `perflab` line parses with the
real CLI, and the paths and names it gives for the samples are the deployment files' own."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from perflab.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cluster.md"


def shell_lines(text: str) -> list[str]:
    """The lines of the fenced code blocks, continuation lines (`\\`) joined."""
    lines: list[str] = []
    for block in re.findall(r"```(?:bash)?\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines.extend(ln.split("  #")[0].strip() for ln in joined.splitlines() if ln.strip())
    return lines


def test_every_perflab_command_in_the_cluster_doc_parses() -> None:
    commands = [ln for ln in shell_lines(DOC.read_text()) if ln.startswith("perflab ")]
    assert len(commands) >= 6
    seen = set()
    for line in commands:
        argv = shlex.split(line)[1:]
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"docs/cluster.md: `{line}` is not a valid perflab command")
        seen.add(args.command)
        if getattr(args, "target", None):
            assert args.target.startswith("http"), line
    assert {"run", "worker", "capacity"} <= seen


def test_the_doc_names_the_samples_where_compose_and_k8s_put_them() -> None:
    text = DOC.read_text()
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    path = compose["services"]["locust-master"]["environment"]["LOCUST_PERFLAB_SAMPLES"]
    assert f"locust-master:{path}" in text  # docker compose cp
    assert f'"$MASTER:{path}"' in text  # kubectl cp
    claims = [
        d["metadata"]["name"]
        for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "locust.yaml").read_text())
        if d and d["kind"] == "PersistentVolumeClaim"
    ]
    assert claims and all(f"`{c}`" in text for c in claims)
    readme = (ROOT / "README.md").read_text()
    assert "(docs/cluster.md)" in readme
