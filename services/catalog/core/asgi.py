"""Tiny helpers the catalog's pure-ASGI middlewares share: JSON answers and header look-ups."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from perflab_services.common.middleware import Receive, Scope, Send

__all__ = ["Receive", "Scope", "Send", "header", "send_json"]


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})
