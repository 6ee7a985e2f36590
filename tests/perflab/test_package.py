"""The shape of the perflab package: a light `import perflab`, a public surface that resolves,
and modules that import each other in one direction only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import perflab

PACKAGE = Path(perflab.__file__).resolve().parent
HEAVY = ("pandas", "numpy", "httpx", "locust", "gevent", "matplotlib", "sqlalchemy", "fastapi")


def test_import_perflab_pulls_in_nothing_heavy() -> None:
    """Locustfiles import perflab under gevent, notebooks before anything starts."""
    code = (
        "import sys, perflab, perflab.recorder\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "perflab" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_every_public_name_resolves() -> None:
    for name in perflab.__all__:
        assert getattr(perflab, name) is not None, name
    assert perflab.Run.__module__ == "perflab.results"
    assert set(perflab.__all__) <= set(dir(perflab))
    try:
        perflab.nonexistent  # noqa: B018
    except AttributeError as exc:
        assert "no attribute 'nonexistent'" in str(exc)
    else:
        raise AssertionError("an unknown attribute must raise AttributeError")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path, here: str) -> set[str]:
    """The perflab modules that `path` (the module `here`) imports anywhere: at module level,
    under TYPE_CHECKING, inside functions. `from perflab import x` counts as perflab.x when x
    is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "perflab"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                pkg = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, node.module] if node.module else pkg)
            else:
                base = node.module or ""
            if base.split(".")[0] != "perflab":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if _is_module(sub) else base)
    found.discard(here)
    return found


def test_no_import_cycle_between_perflab_modules() -> None:
    graph = {_module_name(p): imports_of(p, _module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert "perflab.results" in graph and "perflab.classroom.checks" in graph
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The test above can fail: its parser finds module-level, TYPE_CHECKING, in-function,
    relative and `from perflab import module` imports."""
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "import perflab.stats\n"
        "from perflab import results, LabError\n"
        "from . import paths\n"
        "if TYPE_CHECKING:\n    from perflab.runner import Run\n"
        "def f():\n    from perflab.plots import figures\n"
    )
    found = imports_of(src, "perflab.m")
    assert found == {"perflab.stats", "perflab.results", "perflab", "perflab.paths",
                     "perflab.runner", "perflab.plots"}  # fmt: skip
