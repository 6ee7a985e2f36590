"""uvicorn's HTTP protocol (httptools) with the two bounds it lacks: header size, header time.

uvicorn's fast parser accepts a request head of any size and waits for it forever: an 8 MB
header was accepted, ten connections each sending 20 MB of an unfinished header held 230 MB,
and sockets that never sent a request stayed open (slowloris). This protocol refuses a head
larger than uvicorn's `--h11-max-incomplete-event-size` (the same bound uvicorn's h11 parser
keeps; 64 KiB as the lab starts it) with a 431, and closes a connection whose request head is
not complete within `--timeout-keep-alive` seconds of the connection opening or of the head's
first byte: the time an idle keep-alive connection is given anyway. Bodies are bounded by the
apps (`services/common/limits.py`).

The lab starts every service with it (`perflab.services.UVICORN_OPTIONS`):
`uvicorn --http perflab_services.common.http:GuardedHttpToolsProtocol ...`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
_REFUSAL = b'{"detail": "request header fields too large"}'


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_head_bytes = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self.head_seconds = float(self.config.timeout_keep_alive)
        self._in_head = True  # waiting for (the rest of) a request head
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a kept-alive connection: its head starts
            self._in_head = True
            self._head_bytes = 0
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_seconds, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()

    def _refuse(self) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(_REFUSAL)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + _REFUSAL
        )
        self.transport.close()
