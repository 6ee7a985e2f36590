"""perflab: start sample services, load them with Locust, measure, compare and plot."""

from perflab.errors import LabError

__version__ = "0.1.0"
__all__ = ["LabError", "__version__"]
