"""Plug-ins: the catalog runs a class named in its settings instead of its own.

Why: an exercise is only measured honestly when the student's code runs inside the real service
under real load, not a copy of the service's logic in a notebook. So the catalog can load its
repository, its cache, one extra ASGI middleware or the review model (the body of
`POST /products/{id}/reviews`, a pydantic model) from a *spec*:

- `"path/to/file.py:Name"`: a file (absolute, or relative to the service's working directory),
  as a notebook's `%%writefile my_cache.py` cell makes one;
- `"package.module:Name"`: an importable module.

Settings `repository_plugin`, `cache_plugin`, `middleware_plugin`, `review_model_plugin`
(`CATALOG_*_PLUGIN`) name them; `main.create_app` builds them where it would build its own. A
spec that cannot be loaded stops the service at start with one sentence naming it (no
traceback), never a half-working service.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel


class PluginError(RuntimeError):
    """The spec names no loadable object: the message says which and why."""


def load(spec: str) -> Any:
    """The object `spec` names (`file.py:Name` or `module:Name`)."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name.isidentifier():
        raise PluginError(f"plug-in {spec!r}: write it as 'file.py:Name' or 'module:Name'")
    try:
        if target.endswith(".py"):
            path = Path(target).resolve()
            if not path.is_file():
                raise PluginError(f"plug-in {spec!r}: no file {path}")
            mod_name = f"perflab_plugin_{path.stem}_{abs(hash(str(path))):x}"
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            if module_spec is None or module_spec.loader is None:
                raise PluginError(f"plug-in {spec!r}: {path} is not a Python module")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module  # dataclasses and pickling look modules up by name
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except PluginError:
        raise
    except Exception as exc:  # the student's module failed to import: say how
        raise PluginError(f"plug-in {spec!r} failed to load: {type(exc).__name__}: {exc}") from exc
    try:
        return getattr(module, name)
    except AttributeError:
        raise PluginError(f"plug-in {spec!r}: {target} has no {name!r}") from None


def load_model(spec: str) -> type[BaseModel]:
    """The pydantic model class `spec` names (a request body's type)."""
    obj = load(spec)
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        what = (
            f"the class {obj.__name__}"
            if isinstance(obj, type)
            else f"an object of type {type(obj).__name__}"
        )
        raise PluginError(
            f"plug-in {spec!r} is {what}, not a pydantic model (a class derived from "
            "pydantic.BaseModel)"
        )
    return obj
