"""Where things live. The project root is found from this file, so notebooks work from any cwd."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("PERFLAB_DATA_DIR", ROOT / "data"))
RESULTS = Path(os.environ.get("PERFLAB_RESULTS_DIR", DATA / "results"))
LOADTESTS = ROOT / "loadtests"
NOTEBOOKS = ROOT / "notebooks"
