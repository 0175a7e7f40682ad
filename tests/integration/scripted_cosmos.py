"""A scripted Cosmos DB gateway on a loopback port, for the faults cosmosdb-server cannot
produce (throttling, outages): it answers the metadata the SDK asks for first, and the test's
own handler answers the rest."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

__all__ = ["metadata_response", "serve_gateway"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metadata_response(request: web.Request) -> web.Response | None:
    """The account (``GET /``) or a container (``GET dbs/<db>/colls/<container>``, partitioned on
    ``/tenantId``) as the gateway describes them; None for any other request."""
    path = request.path.rstrip("/")
    parts = path.split("/")[1:]
    if path == "" and request.method == "GET":
        location = [{"name": "Local", "databaseAccountEndpoint": f"{request.url.origin()}/"}]
        return web.json_response(
            {
                "id": "scripted",
                "_rid": "scripted",
                "_self": "",
                "_dbs": "//dbs/",
                "writableLocations": location,
                "readableLocations": location,
                "enableMultipleWriteLocations": False,
                "userConsistencyPolicy": {"defaultConsistencyLevel": "Session"},
            }
        )
    if len(parts) == 4 and request.method == "GET":
        return web.json_response(
            {
                "id": parts[3],
                "_rid": "gAABAIAAAAE=",
                "_self": "dbs/gAABAA==/colls/gAABAIAAAAE=/",
                "partitionKey": {"paths": ["/tenantId"], "kind": "Hash", "version": 2},
            }
        )
    return None


@asynccontextmanager
async def serve_gateway(handle: Handler) -> AsyncIterator[str]:
    """Serve `handle` for every path on a free loopback port; yield the gateway's URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    await web.SockSite(runner, listener).start()
    try:
        yield url
    finally:
        await runner.cleanup()
