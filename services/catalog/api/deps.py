"""FastAPI dependencies: the app-wide `Catalog` and a read session per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from perflab_services.catalog.service import Catalog


def get_catalog(request: Request) -> Catalog:
    return request.app.state.catalog


def get_session(request: Request) -> Iterator[Session]:
    yield from request.app.state.catalog.db.reads()


CatalogDep = Annotated[Catalog, Depends(get_catalog)]
SessionDep = Annotated[Session, Depends(get_session)]
