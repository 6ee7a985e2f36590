"""`perflab serve` in the foreground: what it prints about the embedded Redis, and what not."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]


def _serve(database_url: str, *extra: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    env.pop("REDIS_URL", None)  # the embedded server, whatever the suite runs against
    proc = subprocess.Popen(
        [sys.executable, "-m", "perflab.cli", "serve", "catalog", "--size", "tiny",
         "--cache", "redis", *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and (line := proc.stdout.readline()):
        lines.append(line)
        if "Ctrl-C" in line:
            break
    return proc, "".join(lines)


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


@pytest.mark.slow
def test_serve_names_the_redis_socket_but_not_its_password(database_url) -> None:
    proc, out = _serve(database_url)
    try:
        line = re.search(r"embedded redis-server \(\S+\) on (\S+) (.*)", out)
        assert line, out
        assert Path(line[1]).is_socket()
        assert "--redis-password" in line[2]
        assert "unix://" not in out and "://:" not in out, out
        with pytest.raises(redis.AuthenticationError):  # the socket alone opens nothing
            redis.Redis(unix_socket_path=line[1]).get("x")
    finally:
        _stop(proc)


@pytest.mark.slow
def test_serve_shows_the_redis_url_when_asked(database_url) -> None:
    proc, out = _serve(database_url, "--redis-password")
    try:
        url = re.search(r"embedded redis-server \(\S+\) on \S+ (unix://\S+)", out)
        assert url, out
        assert redis.Redis.from_url(url[1]).ping()
    finally:
        _stop(proc)
