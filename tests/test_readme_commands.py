"""The README's `perflab` commands are ones a user can paste: each parses with the real CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from perflab.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def perflab_lines(text: str) -> list[str]:
    """`perflab ...` lines of the fenced code blocks, comments (`  #`) cut off."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("perflab "):
                lines.append(line)
    return lines


def test_every_perflab_command_in_the_readme_parses() -> None:
    lines = perflab_lines((ROOT / "README.md").read_text())
    assert len(lines) >= 15
    for line in lines:
        try:
            build_parser().parse_args(shlex.split(line)[1:])
        except SystemExit:
            pytest.fail(f"README.md: `{line}` is not a valid perflab command")
