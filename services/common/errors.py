"""The 422 answer for a request that failed validation, safe for any input.

FastAPI's own handler echoes the offending input in the error list. Python's `json` reads
`NaN`, `Infinity` and `1e400` (an overflow) as floats and `"\\ud800"` as a string with a lone
surrogate; neither can be written back as JSON or UTF-8, so that echo used to fail to encode
and the client got a 500 instead of the 422 it earned. Here every echoed value is made
writable first: a non-finite float becomes its name (`"nan"`, `"inf"`), a lone surrogate
becomes U+FFFD, and bytes that are not UTF-8 are decoded with replacement characters.
Both services install it (`install_error_handlers`).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MAX_ECHO_DEPTH = 32


def json_safe(value: Any, depth: int = 0) -> Any:
    """`value` with every float finite-or-named, every string encodable as UTF-8, and nothing
    nested deeper than `MAX_ECHO_DEPTH` (a body a thousand lists deep is echoed cut short,
    instead of overflowing the recursion of whatever writes it)."""
    if depth > MAX_ECHO_DEPTH:
        return "…"
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {json_safe(k, depth + 1): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, depth + 1) for v in value]
    return value


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 (`{"detail": [errors]}`), with the echoed input made writable."""
    return JSONResponse({"detail": jsonable_encoder(json_safe(exc.errors()))}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
