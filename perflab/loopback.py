"""The one loopback rule: perflab loads this machine only, unless told otherwise.

A classroom tool that generates thousands of requests a second must not become a DoS cannon
pointed at someone else's server. Both sides use this rule: the harness before it starts Locust
(`check_target`), and the lab's locustfile when someone types another host in Locust's web UI
(`is_loopback`). It imports the standard library only, so the gevent side can import it.

A host *name* is resolved once, here, and Locust is handed the address that was checked
(`CheckedTarget.url`) with the name kept in the `Host` header: a name resolved a second time
could answer differently (DNS rebinding), and the check would have been for nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from perflab.errors import LabError


@dataclass(frozen=True)
class CheckedTarget:
    """`url`: what to connect to (the checked address when `host` was a name, else `host`);
    `host_header`: the `Host` header that keeps the original name, or None when unchanged."""

    host: str
    url: str
    host_header: str | None = None


def _addresses(hostname: str) -> list[str]:
    """Every address `hostname` resolves to, in the resolver's order (without IPv6 zone ids)."""
    seen: dict[str, None] = {}
    for ai in socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP):
        seen.setdefault(str(ai[4][0]).split("%")[0], None)
    return list(seen)


def _first_listening(addrs: list[str], port: int) -> str:
    """The first address (in the resolver's order) that accepts a connection on `port`, as a
    client trying each in turn would reach: `localhost` may resolve to ::1 first for a service
    that listens on 127.0.0.1 only. The first address when none does (Locust will say so)."""
    for address in addrs:
        try:
            with socket.create_connection((address, port), timeout=1.0):
                return address
        except OSError:
            continue
    return addrs[0]


def _all_loopback(addrs: list[str]) -> bool:
    return bool(addrs) and all(ipaddress.ip_address(a).is_loopback for a in addrs)


def is_loopback(url: str | None) -> bool:
    """True when every address the URL's host resolves to is this machine's."""
    host = urlsplit(url or "").hostname
    if not host:
        return False
    try:
        return _all_loopback(_addresses(host))
    except (OSError, ValueError):
        return False


def check_target(host: str, allow_remote: bool = False) -> CheckedTarget:
    """Only loopback targets unless asked; returns where to connect (see `CheckedTarget`)."""
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LabError(f"target {host!r} is not an http(s) URL like http://127.0.0.1:8000")
    try:
        port = parts.port
    except ValueError:
        raise LabError(f"target {host!r} has an invalid port") from None
    if allow_remote:
        return CheckedTarget(host, host)
    try:
        addrs = _addresses(parts.hostname)
    except (OSError, UnicodeError):
        raise LabError(f"cannot resolve {parts.hostname!r}") from None
    if not _all_loopback(addrs):
        raise LabError(
            f"{host} is not a loopback address; perflab loads only this machine unless you "
            "pass --allow-remote (and own the target)"
        )
    try:
        ipaddress.ip_address(parts.hostname)
        return CheckedTarget(host, host)  # already an address: nothing to resolve again
    except ValueError:
        pass
    address = _first_listening(addrs, port or (443 if parts.scheme == "https" else 80))
    literal = f"[{address}]" if ":" in address else address
    netloc = literal if port is None else f"{literal}:{port}"
    url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    header = parts.hostname if port is None else f"{parts.hostname}:{port}"
    return CheckedTarget(host, url, header)
