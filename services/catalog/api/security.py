"""FastAPI dependencies for who may call what: anonymous reads, editor writes, admin faults.

`Authenticator` (core/security.py) does the cryptography; this module turns its answers into
HTTP: 401 + `WWW-Authenticate: Bearer` for a missing or bad token, 403 for a valid token whose
role is too low.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, MutableMapping
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.routing import APIRoute

from perflab_services.catalog.core.security import (
    ANONYMOUS,
    InvalidToken,
    Principal,
    bearer_token,
    role_at_least,
)
from perflab_services.common import context

PRINCIPAL_SCOPE_KEY = "perflab.principal"


def _unauthorized(message: str, error: str | None = "invalid_token") -> HTTPException:
    challenge = 'Bearer realm="catalog"'
    if error:
        challenge += f', error="{error}", error_description="{message}"'
    return HTTPException(401, message, headers={"WWW-Authenticate": challenge})


def principal_from_scope(scope: MutableMapping[str, Any], auth) -> Principal:
    """Verify the bearer token once per request (the rate limiter may already have)."""
    cached = scope.get(PRINCIPAL_SCOPE_KEY)
    if isinstance(cached, Principal | InvalidToken):
        if isinstance(cached, InvalidToken):
            raise cached
        return cached
    header = None
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            header = value.decode("latin-1")
            break
    try:
        token = bearer_token(header)
        found = ANONYMOUS if token is None else auth.verify(token)
    except InvalidToken as exc:
        scope[PRINCIPAL_SCOPE_KEY] = exc
        raise
    scope[PRINCIPAL_SCOPE_KEY] = found
    return found


async def current_principal(request: Request) -> Principal:
    """Anonymous when no token is sent; a 401 when one is sent and is not valid.

    `async def` although it awaits nothing: FastAPI would run a plain `def` dependency in the
    thread pool, and checking an HS256 signature costs less than that hop on every read.
    """
    try:
        found = principal_from_scope(request.scope, request.app.state.auth)
    except InvalidToken as exc:
        raise _unauthorized(str(exc)) from None
    ctx = context.get()
    if ctx is not None and not found.anonymous:
        ctx.extra["user"] = found.subject  # the subject only: never the token
    return found


class ReaderRoute(APIRoute):
    """A route anyone may read, but not with a bad token: `current_principal` before the
    endpoint, as a router-level `Depends(current_principal)` would, without its cost.

    Each dependency FastAPI solves costs its own pass of `solve_dependencies` (the lab's
    profiler: bench/results/hotpath.md); on a cache hit that was a tenth of the throughput,
    for a check whose answer the endpoint never reads. Here the check runs as a plain call
    in the route's handler: the same 401 (raised inside the route, so FastAPI's exception
    handling answers it, with the route known to the logs and metrics), the same subject in
    the log line. Routes with a body keep checking through their own dependencies (`Editor`,
    `Admin` depend on `current_principal`), so a malformed body and a bad token are answered
    in the same order as before.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is not None:
            return handler

        async def authenticated(request: Request) -> Response:
            await current_principal(request)
            return await handler(request)

        return authenticated


def require(role: str, *, switchable: bool = False):
    """A dependency that needs at least `role`; `switchable` obeys `auth_enabled=false`."""

    def check(request: Request, who: Annotated[Principal, Depends(current_principal)]):
        if switchable and not request.app.state.settings.auth_enabled:
            return who
        if who.anonymous:
            raise _unauthorized(
                f"authentication required: send a bearer token with the {role} role", None
            )
        if not role_at_least(who.role, role):
            raise HTTPException(
                403,
                f"forbidden: this needs the {role} role, you are {who.role}",
                headers={"WWW-Authenticate": 'Bearer realm="catalog", error="insufficient_scope"'},
            )
        return who

    return check


Reader = Annotated[Principal, Depends(current_principal)]
Editor = Annotated[Principal, Depends(require("editor", switchable=True))]
Admin = Annotated[Principal, Depends(require("admin"))]
