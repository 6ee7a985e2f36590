"""A results folder that cannot be written: one clear line, exit 2, nothing measured lost.

Read-only and full folders are real ones: a small tmpfs mounted in a private mount namespace
(`unshare -m` as root, `unshare -rm` in a user namespace otherwise), so nothing is mounted
outside the test's own processes, even if it dies. Where neither works the tests skip and say
why. (chmod cannot make a folder read-only for root, and the suite runs as root in CI.)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from harness_helpers import ROOT, interrupt_run, saved_run
from synthetic import write_run

HERE = Path(__file__).resolve().parent


def _unshare() -> list[str] | None:
    exe = shutil.which("unshare")
    if exe is None:
        return None
    cmd = [exe, "-m"] if os.geteuid() == 0 else [exe, "-r", "-m"]
    probe = subprocess.run(
        [*cmd, "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /tmp"],
        capture_output=True,
        timeout=30,
    )
    return cmd if probe.returncode == 0 else None


UNSHARE = _unshare()
needs_mounts = pytest.mark.skipif(
    UNSHARE is None,
    reason="needs a private mount namespace to mount a small tmpfs (unshare -m as root, or "
    "unprivileged user namespaces); chmod cannot make a folder read-only for root",
)


def on_tmpfs(mount: Path, size: str, shell: str, env: dict[str, str], timeout: float = 120):
    """Run `shell` with a fresh tmpfs of `size` at `mount`, seen only by it and its children."""
    assert UNSHARE is not None
    mount.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o size={size} tmpfs "{mount}" && {shell}'
    return subprocess.run(
        [*UNSHARE, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("perflab: error:")]
    assert len(errors) == 1, stderr
    return errors[0]


CLI = f"{sys.executable} -m perflab.cli"


@needs_mounts
def test_a_read_only_results_folder_is_one_line_before_anything_starts(tmp_path) -> None:
    mount = tmp_path / "ro"
    r = on_tmpfs(
        mount,
        "1m",
        f'mount -o remount,ro "{mount}" && {CLI} run caching --size tiny --duration 2',
        {"PERFLAB_RESULTS_DIR": str(mount / "results")},
    )
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_error_line(r.stderr)
    assert "Read-only file system" in line and "PERFLAB_RESULTS_DIR" in line, line
    assert r.stdout == ""  # no dataset generated, no service started


@needs_mounts
def test_report_into_a_read_only_run_folder_is_one_line(tmp_path) -> None:
    run = write_run("readonly", none=10.0)
    mount = tmp_path / "ro"
    copy = mount / run.path.name
    r = on_tmpfs(
        mount,
        "4m",
        f'cp -r "{run.path}" "{mount}/" && mount -o remount,ro "{mount}" && {CLI} report "{copy}"',
        {},
    )
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_error_line(r.stderr)
    assert "could not be written (Read-only file system)" in line, line
    assert f"the run's data is saved in {copy}" in line


FILL_AT_FINISH = """
import sys
sys.path.insert(0, {here!r})
from pathlib import Path
from synthetic import lognormal, samples
from perflab import experiments
from perflab.errors import LabError
from perflab.loadgen import LoadProfile
from perflab.results import Run

exp = experiments.get("queries")
run = Run.start("full", root=Path({root!r}))
run.add_experiment(exp, LoadProfile(duration=100, warmup=1))
for v in ("naive", "optimized"):
    run.add_variant("queries", v, samples(lognormal(25_000, 5.0, seed=1), rate=250),
                    settings=exp.variant(v).settings)
try:
    run.finish()
except LabError as exc:
    print(f"perflab: error: {{exc}}", file=sys.stderr)
    sys.exit(2)
"""


@needs_mounts
def test_a_full_disk_at_the_end_keeps_the_samples_elsewhere(tmp_path) -> None:
    """The run folder fills up when the tables are written: the samples go to the temp folder
    (on another disk here) and the one line says where."""
    mount, spare = tmp_path / "full", tmp_path / "spare"
    spare.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(FILL_AT_FINISH.format(here=str(HERE), root=str(mount / "results")))
    r = on_tmpfs(mount, "64k", f'{sys.executable} "{script}"', {"TMPDIR": str(spare)})
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_error_line(r.stderr)
    assert "No space left on device" in line, line
    m = re.search(r"the 50000 samples measured are saved in (\S+)", line)
    assert m, line
    kept = pd.read_csv(Path(m.group(1)) / "samples.csv.gz")
    assert len(kept) == 50_000 and set(kept["variant"]) == {"naive", "optimized"}
    assert (Path(m.group(1)) / "manifest.json").is_file()


@pytest.mark.slow  # a real run: services and Locust
@needs_mounts
def test_a_disk_that_fills_during_run_is_said_so(tmp_path, database_url) -> None:
    """Not "Locust recorded no requests": the disk is full, and what was measured is kept."""
    mount, spare = tmp_path / "full", tmp_path / "spare"
    spare.mkdir()
    r = on_tmpfs(
        mount,
        "320k",
        f"{CLI} run caching --variants none,memory --size tiny --users 2 --duration 4 --warmup 0.5",
        {
            "PERFLAB_RESULTS_DIR": str(mount / "results"),
            "PERFLAB_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": database_url,
            "TMPDIR": str(spare),
        },
        timeout=240,
    )
    print(r.stdout[-2000:], r.stderr[-3000:])
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_error_line(r.stderr)
    assert "No space left on device" in line, line
    assert "recorded no requests" not in r.stdout + r.stderr
    m = re.search(r"samples measured are saved in (\S+)", line)
    if m:  # some requests had been recorded before the disk filled: they are kept
        assert len(pd.read_csv(Path(m.group(1)) / "samples.csv.gz")) > 0
    else:
        assert "no requests had been measured" in line or "what Locust recorded" in line, line


@pytest.mark.slow  # a real run: services and Locust
def test_a_run_interrupted_during_its_warmup_is_saved_as_empty(tmp_path, database_url) -> None:
    args = ["caching", "--variants", "none,memory", "--size", "tiny", "--users", "2"]
    r = interrupt_run([*args, "--duration", "60", "--warmup", "50"], database_url, tmp_path, 5)
    assert r.returncode == 130, r.err
    assert "Traceback" not in r.out + r.err and "Empty DataFrame" not in r.out
    assert "before any request passed the warm-up" in r.out, r.out
    assert saved_run(r.out) == r.run_dir
    summary = pd.read_csv(r.run_dir / "summary.csv")
    assert summary.empty and {"experiment", "p50_ms", "rps"} <= set(summary.columns)
    assert len(pd.read_csv(r.run_dir / "samples.csv.gz")) > 5  # the warm-up is kept
    assert (r.run_dir / "report.html").is_file()
