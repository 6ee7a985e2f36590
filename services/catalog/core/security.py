"""Authentication and roles: per-install secrets, hashed demo users, short-lived JWTs.

Why each choice:
- The signing key is never a constant in the code: it comes from `CATALOG_JWT_SECRET`, or is
  generated once per install into `<secrets_dir>/.jwt-secret` (mode 0600). Every worker of every
  service started from this checkout reads the same file, so tokens work across workers.
- The demo users (viewer, editor, admin) get random passwords generated once per install into
  `<secrets_dir>/.demo-users.json` (0600, like a generated initial admin password), so the lab
  and the tests can log in. The service keeps only scrypt hashes in memory and compares in
  constant time.
- Tokens are verified with the algorithm pinned to HS256 (so `alg: none` or an RS/HS confusion
  is refused), and signature, `exp`, `nbf`, `iat`, `iss`, `aud` and `sub` are all required.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

ALGORITHM = "HS256"
ROLES = ("viewer", "editor", "admin")  # each role includes the ones before it
DEMO_USERS = {"viewer": "viewer", "editor": "editor", "admin": "admin"}  # username -> role
JWT_SECRET_FILE = ".jwt-secret"
DEMO_USERS_FILE = ".demo-users.json"
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def role_at_least(role: str, needed: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def _write_once(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 unless it exists; safe when several workers race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic: exactly one writer wins, the others read its file
    finally:
        tmp.unlink(missing_ok=True)


def install_secret(secrets_dir: str | os.PathLike[str]) -> bytes:
    """The per-install JWT key (32 random bytes, hex), created on first use."""
    path = Path(secrets_dir) / JWT_SECRET_FILE
    if not path.exists():
        _write_once(path, secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def demo_passwords(secrets_dir: str | os.PathLike[str]) -> dict[str, str]:
    """username -> password of the demo users, generated once per install."""
    path = Path(secrets_dir) / DEMO_USERS_FILE
    if not path.exists():
        generated = {user: secrets.token_urlsafe(12) for user in DEMO_USERS}
        _write_once(path, json.dumps(generated, indent=1).encode())
    return json.loads(path.read_text())


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        _, salt_hex, digest_hex = stored.split("$")
        digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), **_SCRYPT)
    except ValueError:
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject and role (or an anonymous reader)."""

    subject: str
    role: str

    @property
    def anonymous(self) -> bool:
        return self.subject == ""


ANONYMOUS = Principal("", "")


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or not for us: a 401."""


class Authenticator:
    """Checks passwords against hashed demo users; issues and verifies tokens."""

    def __init__(
        self,
        secret: bytes,
        *,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        users: dict[str, tuple[str, str]],
    ) -> None:
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self._users = users  # username -> (role, scrypt hash)
        # A hash to check against for unknown users, so timing does not reveal who exists.
        self._dummy = hash_password(secrets.token_urlsafe(12))

    @classmethod
    def from_settings(cls, settings: Any) -> Authenticator:
        secret = (
            settings.jwt_secret.get_secret_value().encode()
            if settings.jwt_secret is not None
            else install_secret(settings.secrets_dir)
        )
        passwords = demo_passwords(settings.secrets_dir)
        users = {
            name: (role, hash_password(passwords[name]))
            for name, role in DEMO_USERS.items()
            if name in passwords
        }
        return cls(
            secret,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            ttl_seconds=settings.jwt_ttl_seconds,
            users=users,
        )

    def authenticate(self, username: str, password: str) -> str | None:
        """The user's role if the password is right, else None."""
        role, stored = self._users.get(username, ("", self._dummy))
        ok = verify_password(password, stored)
        return role if ok and role else None

    def issue(self, subject: str, role: str, now: float | None = None) -> dict[str, Any]:
        now = int(now if now is not None else time.time())
        claims = {
            "sub": subject,
            "role": role,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_seconds,
            "jti": secrets.token_hex(8),
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return {"access_token": token, "token_type": "bearer", "expires_in": self.ttl_seconds}

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],  # pinned: never trust the header's `alg`
                audience=self.audience,
                issuer=self.issuer,
                leeway=2,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("token not valid yet") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("token signature is invalid") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidToken(f"token algorithm not allowed (only {ALGORITHM})") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("token audience is wrong") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("token issuer is wrong") from None
        except jwt.PyJWTError:
            raise InvalidToken("token is malformed or incomplete") from None
        role = claims.get("role")
        subject = claims.get("sub")
        if role not in ROLES or not isinstance(subject, str) or not subject:
            raise InvalidToken("token has no valid role or subject")
        return Principal(subject, role)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None when there is no header."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("use 'Authorization: Bearer <token>'")
    return token.strip()
