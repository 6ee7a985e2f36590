"""Log in to a running catalog as one of its demo users (viewer, editor, admin).

The demo passwords are generated once per install into `<secrets dir>/.demo-users.json` (the
service reads the same file and keeps only password hashes). `token(svc, "editor")` returns a
bearer token; `headers(svc, "editor")` the `Authorization` header to send with it.
"""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from perflab import paths
from perflab.errors import LabError

if TYPE_CHECKING:
    from perflab.services import ServiceHandle

DEMO_USERS_FILE = ".demo-users.json"  # the name services/catalog/core/security.py writes


def secrets_dir(svc: ServiceHandle | None = None) -> Path:
    env = getattr(svc, "env", None) or {}
    for key, value in env.items():
        if key.endswith("_SECRETS_DIR"):
            return Path(value)
    return paths.DATA


def password(user: str, svc: ServiceHandle | None = None) -> str:
    path = secrets_dir(svc) / DEMO_USERS_FILE
    if not path.exists():
        raise LabError(f"no demo users yet ({path} is missing): start the catalog once first")
    users = json.loads(path.read_text())
    if user not in users:
        raise LabError(f"unknown demo user {user!r}: choose one of {', '.join(users)}")
    return users[user]


def verify_for(svc: ServiceHandle | str) -> ssl.SSLContext | bool:
    """What httpx should verify the service's certificate with (its CA file, or the default)."""
    ca = getattr(svc, "ca_file", None)
    if not ca:
        return True
    from perflab.tls import client_context

    return client_context(ca)


def token(svc: ServiceHandle | str, user: str = "editor") -> str:
    url = svc if isinstance(svc, str) else svc.url
    r = httpx.post(
        f"{url}/auth/token",
        data={"username": user, "password": password(user, None if isinstance(svc, str) else svc)},
        verify=verify_for(svc),
        timeout=30,
    )
    if r.status_code != 200:
        raise LabError(f"login as {user} failed: HTTP {r.status_code} {r.text[:200]}")
    return r.json()["access_token"]


def headers(svc: ServiceHandle | str, user: str = "editor") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(svc, user)}"}
