"""perflab: start sample services, load them with Locust, measure, compare and plot.

The public surface is named here but imported on first use (PEP 562): `import perflab` stays
light (no pandas, httpx or Locust), because locustfiles import perflab inside Locust's gevent
process and notebooks import it before anything is started. `perflab.Lab`, `perflab.Run`,
`perflab.stats`... each loads its module the first time it is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from perflab.errors import LabError

__version__ = "0.1.0"

# Public name -> the module that defines it.
_NAMES = {
    "Lab": "perflab.lab",
    "Run": "perflab.results",
    "run_experiments": "perflab.runner",
    "Experiment": "perflab.experiments",
    "Variant": "perflab.experiments",
    "LoadProfile": "perflab.loadgen",
    "Endpoint": "perflab.loadgen",
    "run_load": "perflab.loadgen",
}
# Public modules, reachable as attributes (`perflab.stats.compare`) without importing them first.
_MODULES = (
    "analysis",
    "auth",
    "classroom",
    "experiments",
    "faults",
    "plots",
    "report",
    "results",
    "stats",
    "webui",
)

__all__ = ["LabError", "__version__", *_NAMES, *_MODULES]

if TYPE_CHECKING:  # the names' types, for type checkers and editors; nothing imported at run time
    from perflab.experiments import Experiment as Experiment
    from perflab.experiments import Variant as Variant
    from perflab.lab import Lab as Lab
    from perflab.loadgen import Endpoint as Endpoint
    from perflab.loadgen import LoadProfile as LoadProfile
    from perflab.loadgen import run_load as run_load
    from perflab.results import Run as Run
    from perflab.runner import run_experiments as run_experiments


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _MODULES:
        value = importlib.import_module(f"perflab.{name}")
    else:
        raise AttributeError(f"module 'perflab' has no attribute {name!r}")
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
