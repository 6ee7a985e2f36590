"""Loopback test servers whose true latency is known: the harness's measuring sticks.

A harness that reports a p99 must be checked against a server whose p99 we can compute. These
servers are raw asyncio HTTP/1.1 (keep-alive, no framework, no logging on the request path), so
what they add on top of the configured behaviour is a few tens of microseconds:

- `sleep`: every request sleeps `--ms` milliseconds, then answers; with `--slow-every N`, every
  Nth request to arrive sleeps `--slow-ms` instead (a two-speed server: `--ms 5 --slow-every 10
  --slow-ms 50` answers 90% of requests after 5 ms and 10% after 50 ms);
- `fast`: answers at once;
- `stall`: like `sleep`, but for `--stall-s` seconds out of every `--stall-every` seconds the
  whole server stalls (a global pause, like a stop-the-world GC or a blocked event loop): a
  request arriving during a stall waits until the stall ends. Stalls start at the server's
  start time + `stall_every - stall_s`, so the first seconds are clean.

`--fail-every N` answers 500 to every Nth request (to see errors in the plots). Each request's
`X-Request-ID` is echoed back. Run it with `python -m perflab.targets --mode sleep --ms 20
--port 8123`, or from Python with `start_target(...)`, which goes through `perflab.procs.spawn`
(dies with its parent) and waits until it answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from perflab.errors import LabError
from perflab.procs import ManagedProcess, free_port, port_in_use, spawn, wait_until
from perflab_services.common.watchdog import start_parent_watchdog

MODES = ("sleep", "fast", "stall")


@dataclass
class TargetBehaviour:
    mode: str = "sleep"
    ms: float = 20.0
    stall_every: float = 5.0
    stall_s: float = 1.0
    fail_every: int = 0
    slow_every: int = 0
    slow_ms: float = 0.0

    def sleep_ms(self, arrival: int) -> float:
        """How long the request that arrived `arrival`-th (from 1) sleeps before answering."""
        if self.mode == "fast":
            return 0.0
        if self.slow_every > 0 and arrival % self.slow_every == 0:
            return self.slow_ms
        return self.ms

    def stall_wait(self, now: float, t0: float) -> float:
        """Seconds a request arriving at `now` waits for the current stall to end (0 if none)."""
        if self.mode != "stall":
            return 0.0
        phase = (now - t0) % self.stall_every
        start = self.stall_every - self.stall_s
        return self.stall_every - phase if phase >= start else 0.0


def stall_percentile(q: float, base_ms: float, stall_every: float, stall_s: float) -> float:
    """The true q-quantile (0..1) of latency, in ms, against a `stall` server under open load.

    With arrivals spread evenly in time, a fraction f = stall_s / stall_every of requests arrive
    during a stall; each waits for the rest of it, uniform on (0, stall_s], then `base_ms`. So
    P(latency > base + w) = f * (1 - w / stall_s) for 0 <= w <= stall_s: quantiles up to 1 - f
    are `base_ms`, and above that latency = base + stall_s * (1 - (1 - q) / f).
    """
    f = stall_s / stall_every
    if q <= 1 - f:
        return base_ms
    return base_ms + stall_s * 1000 * (1 - (1 - q) / f)


class _Server:
    def __init__(self, behaviour: TargetBehaviour) -> None:
        self.b = behaviour
        self.t0 = time.monotonic()
        self.arrivals = 0
        self.count = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                await self.respond(writer, lines[0], headers)
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def respond(self, writer: asyncio.StreamWriter, request_line: str, headers: dict) -> None:
        start = time.monotonic()
        self.arrivals += 1
        sleep_ms = self.b.sleep_ms(self.arrivals)
        wait = self.b.stall_wait(start, self.t0)
        if wait > 0:
            await asyncio.sleep(wait)
        if sleep_ms > 0:
            await asyncio.sleep(sleep_ms / 1000)
        self.count += 1
        failed = self.b.fail_every > 0 and self.count % self.b.fail_every == 0
        status = "500 Internal Server Error" if failed else "200 OK"
        body = b'{"ok":false}' if failed else b'{"ok":true}'
        elapsed_ms = (time.monotonic() - start) * 1000
        extra = ""
        if rid := headers.get("x-request-id"):
            extra = f"X-Request-ID: {rid}\r\n"
        writer.write(
            (
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nServer-Timing: app;dur={elapsed_ms:.3f}\r\n"
                f"{extra}\r\n"
            ).encode("latin-1")
            + body
        )
        await writer.drain()


async def serve(behaviour: TargetBehaviour, port: int, host: str = "127.0.0.1") -> None:
    server = _Server(behaviour)
    srv = await asyncio.start_server(server.handle, host, port, backlog=1024)
    start_parent_watchdog()  # exit with the lab that started us, whatever killed it
    print(f"perflab target ({behaviour.mode}) on http://{host}:{port}", flush=True)
    async with srv:
        await srv.serve_forever()


@dataclass
class Target:
    """A running test server. `with start_target(...) as t: t.url`."""

    url: str
    port: int
    behaviour: TargetBehaviour
    proc: ManagedProcess

    def stop(self) -> None:
        self.proc.stop()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(port: int) -> bool:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status in (200, 500)
    finally:
        conn.close()


def start_target(
    mode: str = "sleep",
    ms: float = 20.0,
    *,
    stall_every: float = 5.0,
    stall_s: float = 1.0,
    fail_every: int = 0,
    slow_every: int = 0,
    slow_ms: float = 0.0,
    port: int | None = None,
    log_dir: Path | None = None,
) -> Target:
    """Start a test server in its own process (via `spawn`) and wait until it answers."""
    b = TargetBehaviour(mode, ms, stall_every, stall_s, fail_every, slow_every, slow_ms)
    _validate(b)
    if port is not None and port_in_use(port):
        raise LabError(f"port {port} is taken: stop what uses it, or leave --port out")
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "perflab.targets",
        "--mode",
        mode,
        "--ms",
        str(ms),
        "--stall-every",
        str(stall_every),
        "--stall-s",
        str(stall_s),
        "--fail-every",
        str(fail_every),
        "--slow-every",
        str(slow_every),
        "--slow-ms",
        str(slow_ms),
        "--port",
        str(port),
    ]
    out = (log_dir / f"target-{mode}-{port}.out") if log_dir else None
    proc = spawn(f"target-{mode}", argv, output=out)
    # The first request may land in a stall window only if stall_every - stall_s is tiny.
    wait_until(lambda: _answers(port), proc, 20, "answering HTTP")
    return Target(f"http://127.0.0.1:{port}", port, b, proc)


def _validate(b: TargetBehaviour) -> None:
    if b.mode not in MODES:
        raise LabError(f"unknown mode {b.mode!r}: choose one of {', '.join(MODES)}")
    if b.ms < 0:
        raise LabError("--ms must be 0 or more")
    if b.mode == "stall" and not 0 < b.stall_s < b.stall_every:
        raise LabError("--stall-s must be positive and shorter than --stall-every")
    if b.fail_every < 0:
        raise LabError("--fail-every must be 0 (never) or more")
    if b.slow_every < 0 or b.slow_ms < 0:
        raise LabError("--slow-every and --slow-ms must be 0 or more")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m perflab.targets",
        description="A loopback HTTP server with known latency, to check the harness against.",
    )
    p.add_argument("--mode", choices=MODES, default="sleep")
    p.add_argument("--ms", type=float, default=20.0, help="sleep per request (sleep, stall)")
    p.add_argument("--stall-every", type=float, default=5.0, help="stall period, seconds")
    p.add_argument("--stall-s", type=float, default=1.0, help="stall length, seconds")
    p.add_argument("--fail-every", type=int, default=0, help="answer 500 to every Nth request")
    p.add_argument("--slow-every", type=int, default=0, help="every Nth request is slow (sleep)")
    p.add_argument("--slow-ms", type=float, default=0.0, help="sleep of a slow request")
    p.add_argument("--port", type=int, default=8123)
    p.add_argument("--host", default="127.0.0.1")
    args = p.parse_args(argv)
    b = TargetBehaviour(
        args.mode,
        args.ms,
        args.stall_every,
        args.stall_s,
        args.fail_every,
        args.slow_every,
        args.slow_ms,
    )
    try:
        _validate(b)
        asyncio.run(serve(b, args.port, args.host))
    except LabError as exc:
        print(f"perflab.targets: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        msg = f"cannot listen on {args.host}:{args.port}: {exc.strerror}"
        print(f"perflab.targets: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
