"""Tiny HTTP/1.1 targets whose latency is known in advance, for checking the lab's numbers.

`python -m bench.targets --mode sleep --delay-ms 20 --port 8123` answers every request after
sleeping 20 ms; `--mode instant` answers at once; `--mode stall` answers at once except during a
periodic freeze (`--stall-s 1 --period-s 10`: the first second of every ten seconds, counted from
start-up), when every request waits until the freeze ends. Because the truth is known, the lab's
percentiles can be held against it.

A raw asyncio server (no framework) so the target adds as little as possible of its own: any
gap between the lab and the truth is the lab's, not the target's. Keep-alive is supported, since
both Locust and the reference client reuse one connection per user.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time

_BODY = b"ok"
_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
    + str(len(_BODY)).encode()
    + b"\r\n\r\n"
    + _BODY
)


class Target:
    def __init__(self, mode: str, delay_s: float, stall_s: float, period_s: float) -> None:
        if mode not in ("sleep", "instant", "stall"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode == "stall" and not 0 < stall_s < period_s:
            raise ValueError("stall mode needs 0 < stall_s < period_s")
        self.mode = mode
        self.delay_s = delay_s
        self.stall_s = stall_s
        self.period_s = period_s
        self.t0 = time.monotonic()

    async def wait(self) -> None:
        if self.mode == "sleep":
            await asyncio.sleep(self.delay_s)
        elif self.mode == "stall":
            phase = (time.monotonic() - self.t0) % self.period_s
            if phase < self.stall_s:
                await asyncio.sleep(self.stall_s - phase)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:].strip() or 0)
                if length:
                    await reader.readexactly(length)
                await self.wait()
                writer.write(_RESPONSE)
                await writer.drain()
                if b"connection: close" in head.lower():
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def _watch_parent() -> None:
    """Exit when the lab that started us is gone (also covered by PDEATHSIG on Linux)."""
    raw = os.environ.get("PERFLAB_PARENT_PID", "")
    if not raw.isdigit():
        return
    while True:
        try:
            os.kill(int(raw), 0)
        except ProcessLookupError:
            os._exit(1)
        await asyncio.sleep(0.5)


async def serve(target: Target, host: str, port: int) -> None:
    server = await asyncio.start_server(target.handle, host, port, backlog=1024)
    watcher = asyncio.create_task(_watch_parent())
    async with server:
        await server.serve_forever()
    watcher.cancel()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["sleep", "instant", "stall"], default="instant")
    p.add_argument("--delay-ms", type=float, default=20.0)
    p.add_argument("--stall-s", type=float, default=1.0)
    p.add_argument("--period-s", type=float, default=10.0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    target = Target(args.mode, args.delay_ms / 1000, args.stall_s, args.period_s)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(target, args.host, args.port))


if __name__ == "__main__":
    main()
