"""`POST /auth/token`: exchange a demo user's password for a short-lived bearer token.

Accepts a form (OAuth2 password flow, what /docs sends) or JSON. The body is parsed here rather
than by a pydantic model so a validation error can never echo the password back.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from perflab_services.common.clients import client_host

router = APIRouter(prefix="/auth", tags=["auth"])

_MAX_FIELD = 200


def _fail(message: str) -> HTTPException:
    return HTTPException(422, message)


async def _credentials(request: Request) -> tuple[str, str]:
    raw = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError):
            raise _fail("body is not valid JSON") from None
        except RecursionError:  # [[[[...]]]] a thousand deep: refused, not a crash
            raise _fail("body is nested too deeply") from None
        if not isinstance(data, dict):
            raise _fail("send a JSON object with username and password")
    elif kind == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(raw.decode("utf-8"), max_num_fields=10, strict_parsing=False)
        except (ValueError, UnicodeDecodeError):
            raise _fail("form body is not valid") from None
        data = {k: v[0] for k, v in form.items()}
    else:
        raise HTTPException(415, "send application/json or application/x-www-form-urlencoded")
    username, password = data.get("username"), data.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise _fail("username and password are required strings")
    if not (0 < len(username) <= _MAX_FIELD and 0 < len(password) <= _MAX_FIELD):
        raise _fail(f"username and password must be 1 to {_MAX_FIELD} characters")
    return username, password


# The same credentials, as a form (OAuth2 password flow) or as JSON.
_CREDENTIALS = {
    "schema": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "maxLength": _MAX_FIELD},
            "password": {"type": "string", "maxLength": _MAX_FIELD},
        },
    }
}


@router.post(
    "/token",
    summary="Get an access token (demo users: viewer, editor, admin)",
    responses={
        401: {"description": "wrong username or password"},
        429: {"description": "too many login attempts from this client or for this user"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": _CREDENTIALS,
                "application/json": _CREDENTIALS,
            },
        }
    },
)
async def token(request: Request) -> dict:
    username, password = await _credentials(request)
    throttle = request.app.state.login_throttle
    if throttle is not None:
        wait = await throttle.wait(client_host(request.scope), username)
        if wait is not None:
            raise HTTPException(
                429,
                f"too many login attempts: retry in {wait:.0f} s",
                headers={"Retry-After": f"{wait:.0f}"},
            )
    auth = request.app.state.auth
    # scrypt costs tens of ms on purpose: off the event loop, so other requests keep flowing.
    role = await run_in_threadpool(auth.authenticate, username, password)
    if role is None:
        raise HTTPException(
            401,
            "wrong username or password",
            headers={"WWW-Authenticate": 'Bearer realm="catalog"'},
        )
    return {**auth.issue(username, role), "role": role}
