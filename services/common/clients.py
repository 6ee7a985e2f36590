"""Who the client is: the connection's peer address, unless a proxy the operator trusts says.

`X-Forwarded-For` is a header anyone can send, so by default it is ignored: the services are
started with uvicorn's `--no-proxy-headers` (`perflab.services`, `deploy/entrypoint.py`; uvicorn
would otherwise believe any loopback peer, and on a laptop every client is on loopback: one
made-up address per request walked around the rate limit). Trusting a proxy is an explicit
setting, `CATALOG_TRUSTED_PROXIES` / `GATEWAY_TRUSTED_PROXIES` (addresses or networks,
comma-separated): only a peer in that list may name the client, through uvicorn's own
`ProxyHeadersMiddleware`, which takes the last address in the chain that is not a trusted proxy.

The gateway is such a proxy for the catalog: it sends the client address it saw as
`X-Forwarded-For` (`forwarded_for`), so a catalog that trusts the gateway's address limits each
gateway user separately instead of all of them as one.
"""

from __future__ import annotations

from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from perflab_services.common.asgi import Scope


def trust_proxies(app: Any, trusted: str) -> None:
    """Let the peers in `trusted` name the client (call after the other middlewares: outermost)."""
    if trusted.strip():
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted)


def client_host(scope: Scope) -> str:
    """The client's address as the app sees it (after a trusted proxy's header, if any)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"
