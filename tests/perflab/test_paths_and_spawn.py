"""Where perflab reads and writes, and how it starts children (perflab.paths, perflab.procs).

The installed-wheel side (./perflab-data, nothing into site-packages) is tests/test_wheel.py;
these are the checkout's side and the child-process rules, without a service.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from harness_helpers import alive

from perflab import paths

ROOT = Path(__file__).resolve().parents[2]


def _without_lab_variables() -> dict[str, str]:
    drop = ("PERFLAB_DATA_DIR", "PERFLAB_RESULTS_DIR")
    return {k: v for k, v in os.environ.items() if k not in drop}


def test_a_checkout_reads_its_folders_and_writes_under_data(tmp_path: Path) -> None:
    assert paths.CHECKOUT == ROOT
    assert paths.LOADTESTS == ROOT / "loadtests" and (paths.LOADTESTS / "lab.py").is_file()
    assert paths.NOTEBOOKS == ROOT / "notebooks"
    assert paths.installed("loadtests/lab.py") == ROOT / "loadtests" / "lab.py"
    code = "import perflab.paths as p; print(p.DATA); print(p.RESULTS)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=_without_lab_variables(),
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert out == [str(ROOT / "data"), str(ROOT / "data" / "results")]  # not the cwd
    env = {**_without_lab_variables(), "PERFLAB_DATA_DIR": "rel"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env,
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert out == [str(tmp_path / "rel"), str(tmp_path / "rel" / "results")]


SPAWNER = textwrap.dedent(
    """
    import sys, time
    from perflab.procs import spawn
    child = spawn("sleeper", ["sleep", "300"])
    print(child.pid, flush=True)
    time.sleep(300)
    """
)


def test_a_child_runs_in_the_data_folder_in_its_group_and_dies_with_the_lab(tmp_path) -> None:
    """`sleep` watches no PERFLAB_PARENT_PID: only the kernel's parent-death signal ends it."""
    env = {**os.environ, "PERFLAB_DATA_DIR": str(tmp_path / "data")}
    lab = subprocess.Popen(
        [sys.executable, "-c", SPAWNER], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    try:
        pid = int(lab.stdout.readline())  # type: ignore[union-attr]
        assert os.getpgid(pid) == pid  # its own process group: a Ctrl-C reaches the lab first
        assert Path(f"/proc/{pid}/cwd").resolve() == tmp_path / "data"
        comm = Path(f"/proc/{pid}/comm")
        deadline = time.monotonic() + 30  # setpriv sets the death signal, then execs sleep
        while comm.read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert comm.read_text().strip() == "sleep"
    finally:
        lab.send_signal(signal.SIGKILL)
        lab.wait()
    deadline = time.monotonic() + 30
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), f"sleep {pid} outlived its lab"


def test_notebooks_are_copied_out_and_a_students_copy_is_kept(tmp_path: Path) -> None:
    def copy() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "perflab.cli", "notebooks", str(tmp_path / "nb")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    first = copy()
    assert first.returncode == 0, first.stderr
    got = {str(p.relative_to(tmp_path / "nb")) for p in (tmp_path / "nb").rglob("*") if p.is_file()}
    walkthrough = {p.name for p in ROOT.joinpath("notebooks").glob("*.ipynb")}
    exercises = {
        f"exercises/{p.name}" for p in ROOT.joinpath("notebooks/exercises").glob("*.ipynb")
    }
    testing = {f"testing/{p.name}" for p in ROOT.joinpath("notebooks/testing").glob("*.py")}
    assert got == walkthrough | exercises | testing | {"README.md"}
    mine = tmp_path / "nb" / "exercises" / sorted(exercises)[0].split("/")[1]
    mine.write_text("my answer")
    second = copy()
    assert second.returncode == 0 and "copied 0 files" in second.stdout, second.stdout
    assert mine.read_text() == "my answer"
    (tmp_path / "file").write_text("")
    bad = subprocess.run(
        [sys.executable, "-m", "perflab.cli", "notebooks", str(tmp_path / "file")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("perflab: error:"), bad.stderr


def test_a_child_gets_ctrl_c_back_when_the_lab_was_started_ignoring_it(tmp_path: Path) -> None:
    """`perflab run … &` from a script starts the lab with SIGINT ignored; its children (Locust,
    stopped with SIGINT so that it writes its report) must not inherit that."""
    script = f"""
import signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
from pathlib import Path
from perflab.procs import spawn
out = Path({str(tmp_path / "child.out")!r})
code = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
child = spawn("probe", [sys.executable, "-c", code], output=out)
child.popen.wait(60)
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert (tmp_path / "child.out").read_text().split() == ["False"]
