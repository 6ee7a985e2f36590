"""perflab.classroom.notebooks.execute: parameters injected after the `parameters` cell, errors
surfaced."""

from __future__ import annotations

import nbformat
import pytest

from perflab.classroom import notebooks


def _write(tmp_path, *sources, tag_first=True):
    nb = nbformat.v4.new_notebook()
    for i, src in enumerate(sources):
        cell = nbformat.v4.new_code_cell(src)
        if i == 0 and tag_first:
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    return path


def test_parameters_override_defaults_with_this_interpreter(tmp_path):
    path = _write(
        tmp_path,
        "QUICK = False\nN = 1",
        "import sys\nSIZE = 'tiny' if QUICK else 'big'\nprint(SIZE, N, sys.executable)",
    )
    done = notebooks.execute(path, {"QUICK": True, "N": 7}, timeout=60)
    import sys

    assert f"tiny 7 {sys.executable}" in done.text()
    tags = [c.metadata.get("tags", []) for c in done.notebook.cells]
    assert tags[1] == [notebooks.INJECTED_TAG]
    # the file on disk is untouched
    assert len(nbformat.read(path, as_version=4).cells) == 2


def test_the_kernel_is_stopped_afterwards(tmp_path):
    import os
    import time

    path = _write(tmp_path, "QUICK = False", "import os\nprint('pid', os.getpid())")
    done = notebooks.execute(path, {"QUICK": True}, timeout=60)
    pid = int(done.text().split("pid", 1)[1].split()[0])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    raise AssertionError(f"kernel {pid} still running after execute()")


def test_no_kernel_client_outlives_execute(tmp_path):
    """The kernel client's channels stop with the kernel: a heartbeat thread left behind pings
    the dead kernel's port every second, forever, and a later kernel bound to that port number
    (the next notebook's in the same process) logs "DELIM not in msg_list" once a second."""
    import threading

    def heartbeats() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if type(t).__name__ == "HBChannel"]

    before = heartbeats()
    path = _write(tmp_path, "QUICK = False", "print('hi')")
    for _ in range(2):
        notebooks.execute(path, {"QUICK": True}, timeout=60)
        assert heartbeats() == before
    failing = _write(tmp_path, "QUICK = False", "raise ValueError('boom')")
    with pytest.raises(notebooks.NotebookError):
        notebooks.execute(failing, {"QUICK": True}, timeout=60)
    assert heartbeats() == before


def test_a_failing_cell_raises_with_its_error(tmp_path):
    path = _write(tmp_path, "QUICK = False", "raise ValueError('boom in cell two')", "print('no')")
    out = tmp_path / "executed.ipynb"
    with pytest.raises(notebooks.NotebookError, match="boom in cell two"):
        notebooks.execute(path, {"QUICK": True}, timeout=60, output=out)
    assert "boom in cell two" in out.read_text()


def test_no_parameters_cell_is_an_error(tmp_path):
    path = _write(tmp_path, "x = 1", tag_first=False)
    with pytest.raises(notebooks.NotebookError, match="parameters"):
        notebooks.execute(path, {"QUICK": True}, timeout=60)


def test_outputs_are_detected(tmp_path):
    path = _write(tmp_path, "QUICK = False", "print(1)")
    assert notebooks.has_outputs(path) == []
    done = notebooks.execute(path, None, timeout=60)
    nbformat.write(done.notebook, path)
    assert notebooks.has_outputs(path) == [0, 1]
