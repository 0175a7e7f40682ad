"""Who the console answers: this machine's own browser, and nobody it relays for.

The console shows kept events and can replay dead letters, so it is served only when all hold:

- the socket peer is a loopback address and the request carries no `X-Forwarded-For` or
  `Forwarded` header (a proxy on this machine may be relaying a request from anywhere; the rule
  of `cloudscale_local.host.admin_access`);
- the `Host` header names a loopback address or `localhost`: a page from another site whose
  name was made to resolve to 127.0.0.1 (DNS rebinding) sends its own name, and is refused;
- a request that changes something (any method but GET and HEAD) also carries the header
  `CONSOLE_HEADER`, which only a same-origin script can add without a preflight the console
  never answers, and an `Origin`, if any, equal to the host's own (`http://` + its `Host`).

A refusal is 403 with a JSON reason. The console sends no CORS headers at all: it sits ahead
of the host's CORS middleware (`Gateway.console`), so no other origin may ever read it.
"""

from __future__ import annotations

import ipaddress

import orjson

from cloudscale_local.host.admin_access import admin_refusal
from cloudscale_local.host.gateway import AsgiApp, Receive, Scope, Send

__all__ = ["CONSOLE_HEADER", "ConsoleGuard", "console_refusal"]

CONSOLE_HEADER = "x-cloudscale-console"
"""The header the console's page adds to each POST (any value)."""

_SAFE_METHODS = frozenset({"GET", "HEAD"})


def console_refusal(scope: Scope) -> str | None:
    """Why the console does not answer this request, or None if it does."""
    if admin_refusal(scope) is not None:
        return "the console is served to this machine's loopback clients only, never through a proxy"
    host = _header(scope, b"host")
    if host is None or not _is_loopback_name(host):
        return "the console answers only a Host header naming a loopback address or localhost"
    if scope.get("method", "GET").upper() in _SAFE_METHODS:
        return None
    origin = _header(scope, b"origin")
    if origin is not None and origin.lower() != f"http://{host}".lower():
        return "the console takes changes only from its own page (Origin is another site's)"
    if _header(scope, CONSOLE_HEADER.encode()) is None:
        return f"the console takes changes only from its own page (the {CONSOLE_HEADER} header is missing)"
    return None


class ConsoleGuard:
    """ASGI middleware: `app` for the requests `console_refusal` lets through, 403 for the rest."""

    def __init__(self, app: AsgiApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = console_refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"error": "forbidden", "message": refusal})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the body, if any, is never read
        ]
        await send({"type": "http.response.start", "status": 403, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _is_loopback_name(host: str) -> bool:
    """Whether a Host header (`name[:port]`, `[v6][:port]`) names this machine's loopback."""
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rpartition(":")[0] if host.count(":") == 1 else host
    if name.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
