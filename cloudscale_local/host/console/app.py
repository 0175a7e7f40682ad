"""The console's Starlette app: the page, its assets, the live stream and the JSON API under `/dashboard`.

`build_console` returns the ASGI app the gateway serves ahead of everything else
(`Gateway.console`), wrapped in `ConsoleGuard` (loopback only, see `guard`), and the
`ConsoleStreams` the host closes when it starts shutting down. Every answer carries headers
that keep the page to itself: its own scripts and styles only (no inline code, no CDN), never
framed, never cached, and no CORS header ever.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from cloudscale_local.host.console.dead_letters_api import dead_letter_routes
from cloudscale_local.host.console.guard import ConsoleGuard
from cloudscale_local.host.console.live_api import live_routes
from cloudscale_local.host.console.sources import ConsoleSources
from cloudscale_local.host.console.stream import ConsoleStreams
from cloudscale_local.host.gateway import AsgiApp, Receive, Scope, Send

__all__ = ["STATIC_DIR", "build_console"]

STATIC_DIR = Path(__file__).parent / "static"
"""The page and its assets, shipped as package data (pyproject's `[tool.setuptools.package-data]`)."""

_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def build_console(sources: ConsoleSources) -> tuple[AsgiApp, ConsoleStreams]:
    """The console app over `sources`, and its streams (close them when the host stops)."""
    streams = ConsoleStreams(sources)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    async def to_page(request: Request) -> Response:
        return RedirectResponse("/dashboard", status_code=308)

    app = Starlette(
        routes=[
            Route("/dashboard", page, methods=["GET"]),
            Route("/dashboard/", to_page, methods=["GET"]),
            Route("/dashboard/stream", streams.endpoint, methods=["GET"]),
            *live_routes(sources),
            *dead_letter_routes(sources),
            Mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ]
    )
    return ConsoleGuard(_with_headers(app)), streams


def _with_headers(app: Starlette) -> AsgiApp:
    """`app`, with `_HEADERS` on every answer."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] != b"cache-control"]
                message = {**message, "headers": [*headers, *_HEADERS]}
            await send(dict(message))

        await app(scope, receive, send_with_headers)

    return wrapped
