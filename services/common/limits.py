"""A request body size limit, as pure ASGI middleware.

Pydantic bounds every field, but only after the whole body has been read into memory: a 1 GB
POST would be buffered first. This middleware refuses a declared `Content-Length` above the
limit before reading anything, and counts the bytes of chunked bodies as they arrive, so no
request can make the service hold more than `max_body_bytes` of body. Either way: a JSON 413.
A request with neither a body length nor a chunked body (every GET) passes straight through.
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

from perflab_services.common.asgi import Receive, Scope, Send, header, send_json


class _TooLarge(HTTPException):
    """An HTTPException, so FastAPI's body reader passes it on (a 413, not a 400)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body too large: the limit is {max_bytes} bytes")


class BodySizeLimitMiddleware:
    def __init__(self, app: Any, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refuse_message(self) -> dict[str, Any]:
        return {"detail": f"request body too large: the limit is {self.max_bytes} bytes"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_json(send, 400, {"detail": "invalid Content-Length header"})
                return
            if int(declared) > self.max_bytes:
                await send_json(send, 413, self._refuse_message())
                return
        if declared is not None or header(scope, b"transfer-encoding") is None:
            # The body is at most the declared length (the server reads no more) or there is
            # none: nothing to count, so no wrappers on this request's receive and send.
            await self.app(scope, receive, send)
            return
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await send_json(send, 413, self._refuse_message())
