"""What routes need besides their parameters: the app-wide `Catalog`, a read session.

`catalog(request)` is a plain function, not a FastAPI dependency. Each dependency FastAPI
solves costs a few dozen microseconds per request (the lab's profiler shows
`solve_dependencies` among the top entries of a cache hit; bench/results/hotpath.md), which on
a 0.2 ms cache hit is a tenth of the throughput, for one attribute look-up. The session stays a
dependency: it is a resource FastAPI opens and closes around the request, which is what
dependencies are for, and the list endpoint that uses it does milliseconds of SQL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response
from sqlalchemy.orm import Session

from perflab_services.catalog.repository import NotFound
from perflab_services.catalog.service import Catalog

MAX_ID = 2**31 - 1  # ids are 32-bit integers in the database


def catalog(request: Request) -> Catalog:
    return request.app.state.catalog


def get_session(request: Request) -> Iterator[Session]:
    yield from catalog(request).db.reads()


SessionDep = Annotated[Session, Depends(get_session)]


async def cached_json(kind: str, ident: int, load: Callable[[int], Awaitable[bytes]]) -> Response:
    """The JSON bytes the service made (or had cached) for `ident`; a 404 for an unknown one."""
    if not 1 <= ident <= MAX_ID:
        raise HTTPException(404, f"{kind} {ident} not found")
    try:
        body = await load(ident)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return Response(body, media_type="application/json")
