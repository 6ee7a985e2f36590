"""The lab's profiler: real py-spy (and the in-process pyinstrument fallback) on a real catalog.

The arithmetic of the "where the time goes" tables is checked on hand-made profiles whose
answer is known; the recording is checked end to end: files written, parseable, and the
table finds the service's own code under load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from perflab import profiling
from perflab.classroom.show import show_file, source_path
from perflab.lab import Lab, service_env
from perflab.results import Run
from perflab.services import start_service

SERVICE = "/work/x/services/catalog/core/cache.py"  # a path the grouping calls "cache"


def _frame(name: str, file: str) -> dict:
    return {"name": name, "file": file, "line": 1, "col": None}


def _sampled(tmp_path: Path) -> Path:
    """MainThread: 6 samples in a route -> cache look-up, 2 in the route itself; a thread pool
    worker waiting for work the whole time; wall 10 samples (the rest: the loop was idle)."""
    frames = [
        _frame("Runner.run", "/lib/python3.11/asyncio/runners.py"),
        _frame("get_product", "/work/x/services/catalog/api/routes/products.py"),
        _frame("MemoryCache.get_or_load", SERVICE),
        _frame("Condition.wait", "/lib/python3.11/threading.py"),
    ]
    main = {
        "type": "sampled",
        "name": 'Thread 1 "MainThread"',
        "unit": "seconds",
        "startValue": 0,
        "endValue": 0.08,
        "samples": [[0, 1, 2]] * 6 + [[0, 1]] * 2,
        "weights": [0.01] * 8,
    }
    pool = {
        "type": "sampled",
        "name": 'Thread 2 "AnyIO worker thread"',
        "unit": "seconds",
        "startValue": 0,
        "endValue": 0.1,
        "samples": [[3]] * 10,
        "weights": [0.01] * 10,
    }
    doc = {"shared": {"frames": frames}, "profiles": [main, pool], "name": "t"}
    path = tmp_path / "svc-1.speedscope.json"
    path.write_text(json.dumps(doc))
    (tmp_path / "svc-1.meta.json").write_text(json.dumps({"seconds": 0.1}))
    return path


def test_table_self_and_total_percent_of_wall_time(tmp_path):
    table = profiling.table(_sampled(tmp_path)).set_index("function")
    assert list(table.index) == ["MemoryCache.get_or_load", "get_product"]  # waiting left out
    assert table.loc["MemoryCache.get_or_load", "self_pct"] == pytest.approx(60)
    assert table.loc["MemoryCache.get_or_load", "group"] == "cache"
    assert table.loc["get_product", "self_pct"] == pytest.approx(20)
    assert table.loc["get_product", "total_pct"] == pytest.approx(80)
    assert table.loc["get_product", "group"] == "our code"
    groups = profiling.groups(tmp_path / "svc-1.speedscope.json").set_index("group")["self_pct"]
    assert groups["cache"] == pytest.approx(60)
    assert groups["our code"] == pytest.approx(20)
    assert groups["idle (event loop waiting)"] == pytest.approx(20)
    assert groups.sum() == pytest.approx(100)


def test_evented_profiles_read_like_sampled_ones(tmp_path):
    """pyinstrument writes evented speedscope files: open/close events with times."""
    frames = [_frame("run", "/lib/python3.11/asyncio/runners.py"), _frame("dumps", "/x/json/x.py")]
    events = [
        {"type": "O", "frame": 0, "at": 0.0},
        {"type": "O", "frame": 1, "at": 0.25},
        {"type": "C", "frame": 1, "at": 0.75},
        {"type": "C", "frame": 0, "at": 1.0},
    ]
    prof = {"type": "evented", "name": "main", "unit": "seconds", "startValue": 0.0}
    prof.update(endValue=1.0, events=events)
    path = tmp_path / "p.speedscope.json"
    path.write_text(json.dumps({"shared": {"frames": frames}, "profiles": [prof]}))
    table = profiling.table(path).set_index("function")
    assert table.loc["dumps", "self_pct"] == pytest.approx(50)
    assert table.loc["dumps", "group"] == "JSON"
    assert table.loc["run", "total_pct"] == pytest.approx(100)


def _check_files(p: profiling.ProcessProfile) -> None:
    assert p.speedscope is not None and p.svg is not None, p.note
    doc = json.loads(p.speedscope.read_text())
    assert doc["profiles"] and doc["shared"]["frames"]
    svg = ET.parse(p.svg).getroot()
    assert svg.tag.endswith("svg") and len(svg) > 3
    meta = json.loads(Path(str(p.speedscope).replace(".speedscope.json", ".meta.json")).read_text())
    assert meta["tool"] == p.tool and meta["seconds"] > 0


@pytest.mark.slow
def test_py_spy_profiles_a_catalog_under_load(start_catalog, tmp_path):
    svc = start_catalog("t-profile", queries="optimized", cache="memory")
    assert svc.proc is not None
    pids = profiling.service_pids(svc.proc.pid)
    assert pids == [svc.proc.pid]  # one worker: uvicorn serves in its own process
    with (
        profiling.profile(pids, tmp_path, label="catalog", rate=200) as session,
        httpx.Client(timeout=10) as client,
    ):
        # The load: cache hits, as fast as one client sends them, for at least 400 requests and
        # 3 s (600 samples at 200 Hz): a faster catalog must not leave the profile too short to
        # hold 15 functions.
        sent, until = 0, time.monotonic() + 3
        while sent < 400 or time.monotonic() < until:
            client.get(svc.url + "/products/1")
            sent += 1
    (p,) = session.profiles
    assert p.tool == "py-spy", p.note
    assert "py-spy" in p.note and str(p.pid) in p.note
    _check_files(p)
    table = profiling.table(p.speedscope)
    assert len(table) == 15
    assert (table["self_pct"] <= table["total_pct"] + 1e-9).all()
    stacks = profiling.load(p.speedscope).stacks
    seen = {f.name for _t, stack, _w in stacks for f in stack}
    assert "ObservabilityMiddleware.__call__" in seen, "the request path was sampled"
    assert "framework" in set(table["group"])


@pytest.mark.slow
def test_pyinstrument_in_the_service_when_py_spy_cannot_attach(
    database_url, tmp_root, tmp_path, monkeypatch
):
    env = service_env("catalog", {"database_url": database_url})
    env.update(profiling.self_profile_env(tmp_path))
    svc = start_service("catalog", env, tmp_root / "logs", label="t-profile-fallback")
    try:
        assert svc.proc is not None
        monkeypatch.setattr(profiling, "py_spy_executable", lambda: None)  # "cannot attach"
        with profiling.profile([svc.proc.pid], tmp_path, label="catalog") as session:
            for _ in range(200):
                httpx.get(svc.url + "/products/2")
        (p,) = session.profiles
        assert p.tool == "pyinstrument", p.note
        assert "pyinstrument" in p.note
        _check_files(p)
        assert not profiling.table(p.speedscope).empty
    finally:
        svc.stop()


def test_a_process_nobody_can_profile_is_said_so(tmp_path, monkeypatch):
    monkeypatch.setattr(profiling, "py_spy_executable", lambda: None)
    with profiling.profile([2**22 + 17], tmp_path, label="ghost") as session:
        pass
    (p,) = session.profiles
    assert p.tool == "none" and p.speedscope is None
    assert "not profiled" in p.note


@pytest.mark.slow  # a real run, in a CLI subprocess
def test_perflab_run_profile_writes_profiles_and_prints_where_the_time_goes(
    tmp_path: Path, database_url: str
):
    env = {**os.environ, "PERFLAB_RESULTS_DIR": str(tmp_path / "results")}
    env["DATABASE_URL"] = database_url
    proc = subprocess.run(
        [sys.executable, "-m", "perflab.cli", "run", "caching", "--quick", "--profile",
         "--size", "tiny"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    run = Run.load(run_dir)
    entries = profiling.run_profiles(run.path, run.manifest)
    assert sorted(e["variant"] for e in entries) == ["memory", "none", "redis"]
    for e in entries:
        assert e["tool"] == "py-spy", e["note"]
        assert e["speedscope"].parent == run_dir / "profiles"
        assert json.loads(e["speedscope"].read_text())["profiles"]
        assert ET.parse(e["svg"]).getroot().tag.endswith("svg")
        # The table printed: its header, the note saying which tool, and a function row.
        head = f"Where the time goes: caching/{e['variant']} (repeat 1)"
        block = proc.stdout.split(head, 1)[1].split("Where the time goes:", 1)[0]
        assert e["note"] in block and "self_pct" in block and "total_pct" in block
        top = profiling.table(e["speedscope"])
        assert top["function"].iloc[0] in block
    page = (run_dir / "report.html").read_text()
    assert page.count("Where the time goes: ") == 3 and page.count("<svg") == 3
    ET.fromstring(page[page.index("<svg") : page.index("</svg>") + 6])


@pytest.mark.slow
def test_lab_service_profile_true_profiles_until_it_stops(tmp_path: Path, database_url: str):
    with Lab(size="tiny", database_url=database_url, log_dir=tmp_path) as lab:
        svc = lab.service("catalog", label="t-lab-profile", profile=True, cache="memory")
        with httpx.Client(timeout=10) as client:
            for _ in range(200):
                client.get(svc.url + "/products/3")
        assert svc.profiles == []  # written when the service stops
        svc.stop()
    (p,) = svc.profiles
    assert p.speedscope is not None and p.speedscope.parent == tmp_path / "profiles"
    _check_files(p)


def test_profiling_is_off_by_default(tmp_path: Path):
    import inspect

    from perflab import runner

    assert inspect.signature(Lab.service).parameters["profile"].default is False
    assert inspect.signature(runner.run_experiments).parameters["profiler"].default is False
    from perflab.cli import build_parser

    args = build_parser().parse_args(["run", "caching"])
    assert args.profile is False


def test_ours_keeps_the_labs_own_functions_and_source_reads_them(tmp_path):
    path = _sampled(tmp_path)
    assert set(profiling.table(path, ours=True)["function"]) == {
        "MemoryCache.get_or_load",
        "get_product",
    }
    module, qualname = profiling.definition(
        "ObservabilityMiddleware.__call__.<locals>.send_wrapper",
        "perflab_services/common/middleware.py",
    )
    assert (module, qualname) == (
        "perflab_services.common.middleware",
        "ObservabilityMiddleware.__call__",
    )
    code = str(show_file(source_path(module), qualname))
    assert "async def __call__" in code and "send_wrapper" in code
    with pytest.raises(ValueError, match="not one of the lab's own modules"):
        profiling.definition("APIRouter.app", "fastapi/routing.py")
