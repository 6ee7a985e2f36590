"""Admin endpoints (admin role): inject, read and clear faults at run time."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request

from perflab_services.catalog.api.security import Admin
from perflab_services.catalog.core.faults import FaultSpec

router = APIRouter(prefix="/admin", tags=["admin"])


def _state(request: Request) -> dict:
    faults = request.app.state.faults
    spec = faults.spec
    # worker_pid: which uvicorn worker answered (faults are shared by all of them)
    return {"faults": spec.model_dump(), "active": spec.active(), "worker_pid": os.getpid()}


@router.get("/faults")
def get_faults(request: Request, _: Admin) -> dict:
    return _state(request)


@router.put("/faults")
def put_faults(spec: FaultSpec, request: Request, _: Admin) -> dict:
    """Replace the faults: the ones in the body are on, everything else is off."""
    request.app.state.faults.set(spec)
    return _state(request)


@router.delete("/faults")
def delete_faults(request: Request, _: Admin) -> dict:
    request.app.state.faults.clear()
    return _state(request)
