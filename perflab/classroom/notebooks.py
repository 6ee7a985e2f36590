"""Run a notebook top to bottom with a fresh kernel, with its parameters overridden.

The convention is papermill's: the code cell tagged `parameters` holds the defaults
(`QUICK = False` and whatever is derived from it); `execute` inserts a cell right after it that
sets the overrides, so the notebook reads exactly as committed and the tests run it in quick
mode. The kernel is always this interpreter's (a kernelspec written to a temporary folder), so
a stale `python3` kernelspec elsewhere on the machine cannot run the notebook in the wrong
environment.
"""

from __future__ import annotations

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
            # nbclient leaves a kernel it was handed running: stop it (and its children) here.
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


def classroom_check(
    notebooks: list[Path] | None = None, *, quick: bool = False, timeout: float = 1800
) -> list[tuple[str, float, str]]:
    """Run each walkthrough notebook as a class would (QUICK = False) and time it.

    Returns (notebook, seconds, "ok" or the first line of the error) per notebook: the wall
    times the instructor guide quotes. One notebook at a time: each starts services and load.
    """
    rows = []
    for path in notebooks or sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        started = time.monotonic()
        try:
            execute(path, {"QUICK": quick}, timeout=timeout)
            outcome = "ok"
        except NotebookError as exc:
            outcome = str(exc).splitlines()[0]
        rows.append((_rel(path), time.monotonic() - started, outcome))
        print(f"{rows[-1][1]:7.0f} s  {rows[-1][0]}  {outcome}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m perflab.classroom.notebooks [--quick] [NOTEBOOK...]` (`make classroom-check`)."""
    import argparse

    parser = argparse.ArgumentParser(description=classroom_check.__doc__)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every walkthrough")
    parser.add_argument("--quick", action="store_true", help="quick mode, as the tests run")
    args = parser.parse_args(argv)
    rows = classroom_check(args.notebooks or None, quick=args.quick)
    mode = "quick" if args.quick else "classroom"
    print(f"\n| notebook | {mode} mode, wall seconds | outcome |\n| --- | ---: | --- |")
    for name, seconds, outcome in rows:
        print(f"| `{Path(name).stem}` | {seconds:.0f} | {outcome} |")
    print(f"\ntotal {sum(s for _, s, _ in rows) / 60:.1f} min on {os.cpu_count()} CPUs")
    return 0 if all(outcome == "ok" for *_, outcome in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
