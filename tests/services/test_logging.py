"""The services' JSON lines (common/logging.py): batched writes that lose nothing and never split
a line, whoever writes them and however the process ends cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from perflab_services.common import context
from perflab_services.common.logging import make_logger


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _wait_for_lines(path: Path, count: int, timeout: float = 30.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        lines = _lines(path)
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def test_a_line_carries_the_request_it_was_written_in(tmp_path):
    path = tmp_path / "svc.jsonl"
    logger = make_logger("catalog", str(path), flush_seconds=0)
    token = context.current.set(context.RequestContext("abc123"))
    try:
        logger.warning("cache_error", op="get")
    finally:
        context.current.reset(token)
    logger.info("startup", variant="x")
    first, second = _lines(path)  # flush_seconds=0: written at once
    assert first["event"] == "cache_error" and first["request_id"] == "abc123"
    assert first["level"] == "warning" and first["service"] == "catalog" and "pid" in first
    assert first["timestamp"].endswith("Z") and "T" in first["timestamp"]
    assert second["level"] == "info" and "request_id" not in second


def test_batched_lines_arrive_without_a_flush(tmp_path):
    path = tmp_path / "svc.jsonl"
    logger = make_logger("catalog", str(path), flush_seconds=0.01)
    for i in range(50):
        logger.info("request", n=i)
    assert [x["n"] for x in _wait_for_lines(path, 50)] == list(range(50))


def test_lines_from_many_threads_are_whole_and_none_is_lost(tmp_path):
    path = tmp_path / "svc.jsonl"
    logger = make_logger("catalog", str(path), flush_seconds=0.001)
    pad = "x" * 3000  # long lines: batches past the size bound are written at once, too

    def write(t: int) -> None:
        for i in range(300):
            logger.info("request", thread=t, n=i, pad=pad)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = _wait_for_lines(path, 1200)  # every line parses: none was split
    assert sorted((x["thread"], x["n"]) for x in lines) == [
        (t, i) for t in range(4) for i in range(300)
    ]


def test_lines_still_waiting_are_written_when_the_process_exits(tmp_path):
    """A process that exits normally writes the buffer (`atexit`); the interval is an hour, so
    nothing else could have. (uvicorn dies of its stop signal instead: the services flush at
    the end of their lifespan, tests/services/catalog/test_observability.py.)"""
    path = tmp_path / "svc.jsonl"
    code = textwrap.dedent(
        f"""
        from perflab_services.common.logging import make_logger
        logger = make_logger("catalog", {str(path)!r}, flush_seconds=3600)
        for i in range(500):
            logger.info("request", n=i)
        print(len(open({str(path)!r}).read()))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0", "the lines waited in the buffer until the exit"
    assert [x["n"] for x in _lines(path)] == list(range(500))


def test_flush_writes_the_lines_waiting(tmp_path):
    path = tmp_path / "svc.jsonl"
    logger = make_logger("catalog", str(path), flush_seconds=3600)
    logger.info("request", n=1)
    logger.error("request", n=2)
    assert path.read_text() == ""
    logger.flush()
    assert [(x["n"], x["level"]) for x in _lines(path)] == [(1, "info"), (2, "error")]


def test_logging_off_writes_nothing(tmp_path):
    path = tmp_path / "svc.jsonl"
    logger = make_logger("catalog", str(path), enabled=False)
    logger.info("request", n=1)
    assert not path.exists()
