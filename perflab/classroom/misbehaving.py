"""A real HTTP server that fails on purpose and remembers every attempt: the resilience checks'
opponent.

A retry, breaker or timeout exercise is only graded honestly against a server that really
refuses, stalls and recovers, and that counts what reached it: a client that returns 200 without
calling anyone, or retries without pause, is then caught by the server's own log, not by reading
the client's code. Standard library only (`http.server` in a thread), on a free loopback port.

Paths (`<key>` is any name, so every check phase has its own counters):
- `/flaky/<key>?fail=N`: 503 for the first N attempts, then 200 with `{"key", "nonce"}`;
- `/status/<key>?code=C`: always C (400, 404, 503...);
- `/slow/<key>?s=S`: answers 200 after S seconds;
- `/switch/<key>`: 503 while `down(key)` is on, 200 otherwise.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit


class MisbehavingServer:
    def __init__(self) -> None:
        self.attempts: dict[str, list[float]] = defaultdict(list)  # key -> monotonic times
        self.nonces: dict[str, str] = {}
        self._down: set[str] = set()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> MisbehavingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MisbehavingServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def down(self, key: str, is_down: bool = True) -> None:
        with self._lock:
            (self._down.add if is_down else self._down.discard)(key)

    def count(self, key: str) -> int:
        with self._lock:
            return len(self.attempts[key])

    def gaps(self, key: str) -> list[float]:
        """Seconds between consecutive attempts at `key`."""
        with self._lock:
            t = self.attempts[key]
            return [b - a for a, b in itertools.pairwise(t)]

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        kind, _, key = parts.path.strip("/").partition("/")
        with self._lock:
            self.attempts[key].append(time.monotonic())
            n = len(self.attempts[key])
            nonce = self.nonces.setdefault(key, os.urandom(8).hex())
            is_down = key in self._down
        status = 200
        if kind == "flaky":
            status = 503 if n <= int(query.get("fail", "0")) else 200
        elif kind == "status":
            status = int(query.get("code", "200"))
        elif kind == "slow":
            time.sleep(float(query.get("s", "1")))
        elif kind == "switch":
            status = 503 if is_down else 200
        else:
            status = 404
        body = json.dumps(
            {"key": key, "nonce": nonce, "attempt": n} if status == 200 else {"detail": "failed"}
        ).encode()
        try:
            req.send_response(status)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)
        except OSError:  # the client gave up (a timeout): nothing to answer
            pass
