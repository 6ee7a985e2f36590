"""Put the real code a lesson measures on screen, read from the files that run, never a copy.

A notebook that pasted the naive query into a markdown cell would drift from the service the
moment someone improved it; a student would measure one thing and read another. So a lesson
calls `show(NaiveRepository.list_products)` or `show_file("loadtests/lab.py", "LabUser")` and
gets the source as it is on disk *now*: highlighted in Jupyter, plain text anywhere else.

Why the file is parsed (`ast`) rather than the object inspected: a student who edits
`services/catalog/repository.py` and starts a new service measures the edited code (each service
is a fresh process), and `show` must print that same code, not the version the kernel imported
an hour ago. Parsing also shows code the kernel must not import: the locustfile imports Locust,
whose gevent patching hangs a Jupyter kernel.
"""

from __future__ import annotations

import ast
import html
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perflab import paths
from perflab.errors import LabError

_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


@dataclass(frozen=True)
class Code:
    """A piece of source with where it lives; shows as highlighted code in Jupyter."""

    text: str
    path: Path
    first_line: int
    last_line: int
    title: str = ""

    @property
    def location(self) -> str:
        return f"{_relative(self.path)}:{self.first_line}-{self.last_line}"

    @property
    def header(self) -> str:
        return f"{self.title} ({self.location})" if self.title else self.location

    def __str__(self) -> str:
        return f"# {self.header}\n{self.text}"

    def __repr__(self) -> str:  # what a terminal, or a notebook's text/plain output, shows
        return str(self)

    def _repr_html_(self) -> str:
        head = f"<div style='font-size:90%;color:#555'>{html.escape(self.header)}</div>"
        return head + _highlight(self.text, self.first_line)

    def __contains__(self, text: str) -> bool:
        return text in self.text


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(paths.ROOT))
    except ValueError:
        return str(path)


def _highlight(text: str, first_line: int) -> str:
    """Pygments HTML (Jupyter ships it), else escaped text in a <pre>."""
    try:
        from pygments import highlight  # type: ignore[import-untyped]
        from pygments.formatters import HtmlFormatter  # type: ignore[import-untyped]
        from pygments.lexers import PythonLexer  # type: ignore[import-untyped]
    except ImportError:  # not in a Jupyter install: still readable
        return f"<pre>{html.escape(text)}</pre>"
    formatter = HtmlFormatter(noclasses=True, linenos="inline", linenostart=first_line)
    return str(highlight(text, PythonLexer(), formatter))


def _resolve(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_absolute():
        p = paths.installed(p)  # the repository's layout, in a checkout or a wheel
    if not p.is_file():
        raise LabError(f"no source file at {_relative(p)}")
    return p


def _find(tree: ast.Module, qualname: str) -> _Definition | None:
    """The definition named `Class.method` (or `outer.<locals>.inner`) in a module's tree."""
    body: list[ast.stmt] = tree.body
    found: _Definition | None = None
    for part in (p for p in qualname.split(".") if p != "<locals>"):
        found = None
        for node in ast.walk(ast.Module(body=body, type_ignores=[])):
            if isinstance(node, _Definition) and node.name == part:
                found = node
                break
        if found is None:
            return None
        body = found.body
    return found


def _span(node: _Definition) -> tuple[int, int]:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return first, node.end_lineno or node.lineno


def show_file(
    path: str | Path,
    symbol: str | None = None,
    *,
    lines: tuple[int, int] | None = None,
    title: str = "",
) -> Code:
    """A file of the repository, or one definition in it, or a range of lines, as on disk now.

    `symbol` is a function, class or method name (`"LabUser.one_request"`); its decorators come
    with it. `lines` is an inclusive 1-based range. Neither: the whole file. The file is parsed,
    never imported, so a locustfile can be shown in a kernel that must not import Locust.
    """
    p = _resolve(path)
    source = p.read_text()
    all_lines = source.splitlines()
    if symbol is not None and lines is not None:
        raise LabError("show_file takes a symbol or a range of lines, not both")
    if symbol is not None:
        node = _find(ast.parse(source, filename=str(p)), symbol)
        if node is None:
            raise LabError(f"{_relative(p)} defines no {symbol!r}")
        first, last = _span(node)
    elif lines is not None:
        first, last = lines
        if not 1 <= first <= last <= len(all_lines):
            raise LabError(f"{_relative(p)} has {len(all_lines)} lines: no range {first}-{last}")
    else:
        first, last = 1, len(all_lines)
    text = "\n".join(all_lines[first - 1 : last])
    return Code(text, p, first, last, title or (symbol or ""))


def source_path(module: str) -> Path:
    """The file of a module, found without importing it (its parent packages are imported):
    `show_file(source_path("perflab_services.frameworks.django_app"), "product")` shows a view
    without configuring Django in the kernel. Works from a checkout and an installed wheel."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        spec = None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise LabError(f"no Python source file for module {module!r}")
    return Path(spec.origin)


def show(obj: Any, title: str = "") -> Code:
    """The source of a function, method or class the lab runs, read from its file now.

    `show(OptimizedRepository.list_products)`, `show(MemoryCache)`. Falls back to `inspect`
    when the file no longer holds a definition of that name (renamed since it was imported).
    """
    target = inspect.unwrap(obj)
    if isinstance(target, property) and target.fget is not None:
        target = target.fget
    try:
        file = inspect.getsourcefile(target)
    except TypeError:
        raise LabError(f"{obj!r} has no Python source to show (a built-in?)") from None
    if file is None:
        raise LabError(f"the source of {obj!r} is not available")
    qualname = getattr(target, "__qualname__", getattr(target, "__name__", ""))
    name = title or qualname
    try:
        return show_file(file, qualname, title=name)
    except LabError:
        text, first = inspect.getsourcelines(target)
        return Code("".join(text).rstrip("\n"), Path(file), first, first + len(text) - 1, name)


def side_by_side(*codes: Code) -> Any:
    """Several pieces of code next to each other in Jupyter (one after another as text)."""
    return _Columns(codes)


@dataclass(frozen=True)
class _Columns:
    codes: tuple[Code, ...]

    def __str__(self) -> str:
        return "\n\n".join(str(c) for c in self.codes)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<div style='flex:1;min-width:0;overflow-x:auto'>{c._repr_html_()}</div>"
            for c in self.codes
        )
        return f"<div style='display:flex;gap:1em;align-items:flex-start'>{cells}</div>"
