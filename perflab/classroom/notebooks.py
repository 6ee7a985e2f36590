"""Run a notebook top to bottom with a fresh kernel, with its parameters overridden.

The convention is papermill's: the code cell tagged `parameters` holds the defaults
(`QUICK = False` and whatever is derived from it); `execute` inserts a cell right after it that
sets the overrides, so the notebook reads exactly as committed and the tests run it in quick
mode. The kernel is always this interpreter's (a kernelspec written to a temporary folder), so
a stale `python3` kernelspec elsewhere on the machine cannot run the notebook in the wrong
environment.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from perflab import paths
from perflab.errors import LabError

if TYPE_CHECKING:
    from jupyter_client import KernelManager
    from nbformat import NotebookNode

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
KERNEL_NAME = "perflab-python3"


class NotebookError(LabError):
    """A cell failed: the message names the notebook, the cell and the error."""


@dataclass
class Executed:
    path: Path
    notebook: NotebookNode  # with outputs
    seconds: float

    def text(self) -> str:
        """Everything the code cells printed (streams and plain-text results)."""
        parts = []
        for cell in self.notebook.cells:
            for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
                parts.append(out.get("text", ""))
                parts.append(out.get("data", {}).get("text/plain", ""))
        return "".join(parts)

    def images(self) -> int:
        return sum(
            "image/png" in out.get("data", {})
            for cell in self.notebook.cells
            if cell.cell_type == "code"
            for out in cell.get("outputs", [])
        )


def parameters_index(nb: NotebookNode) -> int:
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.metadata.get("tags", []):
            return i
    raise NotebookError("the notebook has no code cell tagged 'parameters'")


def inject_parameters(nb: NotebookNode, parameters: dict[str, object]) -> None:
    """Insert a cell setting `parameters` right after the `parameters` cell (in place)."""
    import nbformat

    index = parameters_index(nb)
    source = "# Parameters injected by perflab.classroom.notebooks.execute\n" + "\n".join(
        f"{name} = {value!r}" for name, value in parameters.items()
    )
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [INJECTED_TAG]
    nb.cells.insert(index + 1, cell)


def _kernel_manager(spec_dir: Path) -> KernelManager:
    """A KernelManager whose only kernelspec is this interpreter's ipykernel."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    write_kernel_spec(spec_dir / KERNEL_NAME)
    ksm = KernelSpecManager(kernel_dirs=[str(spec_dir)], ensure_native_kernel=False)
    return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)


def execute(
    path: str | Path,
    parameters: dict | None = None,
    timeout: float = 300,
    output: Path | None = None,
) -> Executed:
    """Run `path` with a fresh kernel; raise `NotebookError` with the failing cell's error.

    `timeout` is per cell (seconds). `output`, if given, receives the executed notebook (also
    when a cell fails: the traceback is in it).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path).resolve()
    if not path.is_file():
        raise NotebookError(f"no notebook at {path}")
    nb = nbformat.read(path, as_version=4)
    if parameters:
        inject_parameters(nb, parameters)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="perflab-kernel-") as spec_dir:
        km = _kernel_manager(Path(spec_dir))
        client = NotebookClient(
            nb,
            km=km,
            timeout=int(timeout),
            kernel_name=KERNEL_NAME,
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute(cwd=str(path.parent))
        except CellExecutionError as exc:
            raise NotebookError(f"{_rel(path)}: a cell failed:\n{exc}") from None
        except CellTimeoutError as exc:
            raise NotebookError(f"{_rel(path)}: a cell ran over {timeout:g} s: {exc}") from None
        except DeadKernelError as exc:
            raise NotebookError(f"{_rel(path)}: the kernel died: {exc}") from None
        finally:
            # nbclient stops neither a kernel it was handed nor that kernel's client: stop both
            # here. A client left running keeps a heartbeat thread pinging the dead kernel's port
            # every second, forever; the next kernel given that port number (the next notebook's
            # in this process, or anyone's on the machine) receives the pings on whichever channel
            # it bound there ("DELIM not in msg_list", once a second).
            if client.kc is not None:
                client.kc.stop_channels()
            if km.has_kernel:
                km.shutdown_kernel(now=True)
            if output is not None:
                output.parent.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, output)
    return Executed(path, nb, time.monotonic() - started)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(paths.ROOT))
    except ValueError:
        return str(path)


def all_notebooks(root: Path | None = None) -> list[Path]:
    """Every notebook under notebooks/ except exercises (those are for students to fill in)."""
    root = root or paths.NOTEBOOKS
    return sorted(
        p
        for p in root.rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts and "exercises" not in p.relative_to(root).parts
    )


def handout(root: Path | None = None) -> list[Path]:
    """What a user who did not clone gets (`perflab notebooks DIR`): the walkthrough notebooks,
    the exercises, the tests notebook 14 runs and the notebooks' README; not the solutions (the
    wheel does not ship them)."""
    root = root or paths.NOTEBOOKS
    found = [*root.glob("*.ipynb"), *(root / "exercises").glob("*.ipynb"), root / "README.md"]
    found += (root / "testing").glob("*.py")
    return sorted(p for p in found if p.is_file())


def copy_out(target: Path, root: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Copy `handout()` into `target`, keeping the layout; a file already there is kept (it may
    hold a student's work). Returns (copied, kept), as paths under `target`."""
    import shutil

    root = root or paths.NOTEBOOKS
    if target.exists() and not target.is_dir():
        raise LabError(f"{target} is not a folder")
    copied: list[Path] = []
    kept: list[Path] = []
    for src in handout(root):
        dst = target / src.relative_to(root)
        if dst.exists():
            kept.append(dst)
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        copied.append(dst)
    return copied, kept


def has_outputs(path: Path) -> list[int]:
    """Indexes of code cells that carry outputs or an execution count (commit them clean)."""
    nb = json.loads(Path(path).read_text())
    return [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]


def quick_parameters() -> dict:
    return {"QUICK": True}


def walkthrough(root: Path | None = None) -> list[Path]:
    """Every walkthrough notebook: each `.ipynb` directly in notebooks/, in course-file order.

    Not a name pattern: a notebook added to the folder is in the list whatever it is called
    (tests/notebooks checks that each one is named `NN_topic.ipynb` and has a classroom time in
    docs/instructor.md)."""
    root = root or paths.NOTEBOOKS
    return sorted(p for p in root.glob("*.ipynb") if p.is_file())


def select(names: list[str], root: Path | None = None) -> list[Path]:
    """The walkthrough notebooks `names` designate, in the order given: a path, a file name, a
    stem (`03_load_testing_truth`) or its number (`03`); `NOTEBOOKS="03 05,06"` works too.
    Raises `LabError` naming the ones that match nothing (or more than one notebook)."""
    every = walkthrough(root)
    chosen: list[Path] = []
    unknown: list[str] = []
    for name in (n for arg in names for n in arg.replace(",", " ").split()):
        as_path = Path(name)
        if as_path.suffix == ".ipynb" and as_path.is_file():
            chosen.append(as_path)
            continue
        stem = as_path.name.removesuffix(".ipynb")
        found = [p for p in every if p.stem == stem] or [
            p for p in every if p.stem.split("_", 1)[0] == stem
        ]
        if len(found) == 1:
            chosen.append(found[0])
        else:
            unknown.append(name)
    if unknown:
        listed = ", ".join(p.stem for p in every)
        raise LabError(f"no single walkthrough notebook named {', '.join(unknown)}: {listed}")
    return chosen


@dataclass
class Timed:
    """One notebook's classroom-check row."""

    notebook: str  # path relative to the checkout
    seconds: float  # wall time, kernel start to shutdown
    outcome: str  # "ok", or the first line of the error
    peak_rss_mb: float | None  # peak of the summed RSS of the kernel and its children (sampled)
    load_at_start: tuple[float, float, float]  # os.getloadavg() before the kernel starts
    load_max: float  # highest 1-minute load average seen while it ran

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


class _TreeSampler:
    """Every `interval` seconds, the summed RSS of this process's children (the kernel and what
    it started: services, Locust, Redis) and the 1-minute load average; keeps the peaks.

    Sampled, so a spike shorter than `interval` can be missed, and a process that detaches from
    the tree (a daemon reparented to init) is not counted: the peak is a lower bound of the
    memory a student's machine needs, the load a measure of how busy the machine was."""

    def __init__(self, interval: float = 0.5) -> None:
        import threading

        self.interval = interval
        self.peak_rss = 0
        self.load_max = os.getloadavg()[0]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> _TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):  # gone between listing and reading
                    total += child.memory_info().rss
            self.peak_rss = max(self.peak_rss, total)
            self.load_max = max(self.load_max, os.getloadavg()[0])
            self._stop.wait(self.interval)


COLUMNS = ["notebook", "wall_s", "peak_rss_mb", "outcome", "load_at_start", "load_max"]


def _row(t: Timed) -> list[str]:
    rss = f"{t.peak_rss_mb:.0f}" if t.peak_rss_mb is not None else "n/a"
    load = "/".join(f"{x:.1f}" for x in t.load_at_start)
    return [Path(t.notebook).stem, f"{t.seconds:.0f}", rss, t.outcome, load, f"{t.load_max:.1f}"]


def machine() -> str:
    """CPUs, memory and OS of this machine, for the results file's header."""
    import platform

    import psutil

    memory = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} CPUs, {memory:.1f} GiB RAM, {platform.platform()}"


def code_version() -> str:
    """The commit the notebooks run at, and whether the checkout had uncommitted changes."""
    from perflab.results import code_version as version

    return version() or "not a git checkout"


def write_results(
    rows: list[Timed], out: Path, *, mode: str, started: float, version: str | None = None
) -> None:
    """`out` (.md) and its .csv twin: the table so far, rewritten after each notebook so an
    interrupted check keeps the rows it measured. `version`: `code_version()` at the start."""
    import csv

    from perflab.results import iso

    out.parent.mkdir(parents=True, exist_ok=True)
    header = [
        f"# classroom-check: {mode} mode",
        "",
        f"- started {iso(started)[:19]} UTC; commit {version or code_version()}",
        f"- machine: {machine()}",
        "- one notebook at a time, fresh kernel each; wall time from kernel start to shutdown;",
        "  peak RSS = summed RSS of the kernel and its child processes, sampled every 0.5 s;",
        "  load = the machine's load average (1/5/15 min) before the notebook started, and the",
        "  highest 1-minute value while it ran (other jobs on the machine count too)",
        "",
        "| notebook | wall s | peak RSS MB | outcome | load at start | max load |",
        "| --- | ---: | ---: | --- | --- | ---: |",
    ]
    lines = [f"| `{r[0]}` | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} |" for r in map(_row, rows)]
    total = sum(r.seconds for r in rows)
    footer = ["", f"total {total / 60:.1f} min, {sum(r.ok for r in rows)}/{len(rows)} ok"]
    out.write_text("\n".join(header + lines + footer) + "\n")
    with out.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(map(_row, rows))


def results_file(mode: str, root: Path | None = None) -> Path:
    """data/results/classroom/<UTC time>-<mode>.md: beside the runs, never one of them (a run
    folder is one with a summary.csv)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return (root or paths.RESULTS) / "classroom" / f"{stamp}-{mode}.md"


def classroom_check(
    notebooks: list[Path] | None = None,
    *,
    quick: bool = False,
    timeout: float = 1800,
    out: Path | None = None,
) -> list[Timed]:
    """Run each walkthrough notebook as a class would (QUICK = False) and time it.

    One row per notebook (wall time, peak RSS, outcome, load average): the times the instructor
    guide quotes. One notebook at a time: each starts services and load. With `out`, the table
    is (re)written there after each notebook (`write_results`), and each executed notebook,
    outputs and any traceback included, goes to the folder of the same name beside it.
    """
    mode = "quick" if quick else "classroom"
    started = time.time()
    version = code_version()
    rows: list[Timed] = []
    for path in notebooks or walkthrough():
        load_at_start = os.getloadavg()
        t0 = time.monotonic()
        with _TreeSampler() as sampler:
            try:
                executed = out.with_suffix("") / Path(path).name if out is not None else None
                execute(path, {"QUICK": quick}, timeout=timeout, output=executed)
                outcome = "ok"
            except NotebookError as exc:
                outcome = str(exc).splitlines()[0]
            except Exception as exc:  # e.g. no kernel could start: a row, and the next notebook
                outcome = f"{type(exc).__name__}: {exc}".splitlines()[0]
        row = Timed(
            _rel(Path(path).resolve()),
            time.monotonic() - t0,
            outcome,
            sampler.peak_rss / 2**20 if sampler.peak_rss else None,
            load_at_start,
            sampler.load_max,
        )
        rows.append(row)
        if out is not None:
            write_results(rows, out, mode=mode, started=started, version=version)
        cells = _row(row)
        print(
            f"{row.seconds:7.0f} s  {cells[2]:>5} MB  load {cells[4]}  {row.notebook}  {outcome}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m perflab.classroom.notebooks [--quick] [NOTEBOOK...]` (`make classroom-check`,
    `NOTEBOOKS="03 05"` for a subset)."""
    import argparse

    parser = argparse.ArgumentParser(description=classroom_check.__doc__)
    parser.add_argument(
        "notebooks", nargs="*", help="paths, names or numbers (03); default: every walkthrough"
    )
    parser.add_argument("--quick", action="store_true", help="quick mode, as the tests run")
    parser.add_argument("--out", type=Path, help="results file (.md; a .csv beside it)")
    parser.add_argument("--timeout", type=float, default=1800, help="per cell, seconds")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "classroom"
    try:
        chosen = select(args.notebooks) if args.notebooks else walkthrough()
    except LabError as exc:
        parser.error(str(exc))
    out = args.out or results_file(mode)
    print(f"{len(chosen)} notebook(s) in {mode} mode; table: {out}", flush=True)
    rows = classroom_check(chosen, quick=args.quick, timeout=args.timeout, out=out)
    print("\n" + out.read_text(), end="")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
