"""What a function sees of a request, and which requests reach it at all, in the local host's
gateway: as the Functions host routes (a method the function does not list is a failed route
match), joins repeated headers, and lets its CORS middleware answer preflights first."""

from __future__ import annotations

import azure.functions as func
import httpx
import orjson

from cloudscale_local.host.cors import CorsPolicy
from cloudscale_local.host.functions import HttpFunction
from cloudscale_local.host.gateway import Gateway
from cloudscale_local.host.routing import RouteTemplate

SHOP = "https://shop.example"


class EchoFunction:
    """`POST /api/events` answering 202 with the request's headers, counting its invocations."""

    def __init__(self) -> None:
        self.calls = 0

    def as_function(self) -> HttpFunction:
        async def ingest_events(req: func.HttpRequest) -> func.HttpResponse:
            self.calls += 1
            return func.HttpResponse(
                orjson.dumps(dict(req.headers)),
                status_code=202,
                mimetype="application/json",
                headers={"Access-Control-Allow-Origin": "https://set-by.function"},
            )

        return HttpFunction("ingest_events", RouteTemplate.compile("events"), ("POST",), ingest_events, "req")


def client_for(gateway: Gateway) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=gateway, client=("127.0.0.1", 50000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7071", timeout=10)


async def test_repeated_headers_reach_the_function_joined_with_a_bare_comma() -> None:
    echo = EchoFunction()
    async with client_for(Gateway([echo.as_function()])) as client:
        response = await client.post(
            "/api/events",
            content=b"{}",
            headers=[("X-Tag", "a"), ("x-tag", ""), ("X-TAG", "b"), ("Origin", SHOP), ("Origin", SHOP)],
        )

    seen = response.json()
    # `StringValues.ToString()`: "," and no space, empty values left out.
    assert seen["x-tag"] == "a,b"
    assert seen["origin"] == f"{SHOP},{SHOP}"


async def test_a_method_the_function_does_not_list_gets_404_without_allow() -> None:
    echo = EchoFunction()
    async with client_for(Gateway([echo.as_function()])) as client:
        response = await client.get("/api/events")
        options = await client.options("/api/events")

    assert response.status_code == 404
    assert "allow" not in response.headers
    assert options.status_code == 404
    assert echo.calls == 0


async def test_a_preflight_never_reaches_the_function_and_an_allowed_origin_replaces_its_header() -> None:
    echo = EchoFunction()
    gateway = Gateway([echo.as_function()], cors=CorsPolicy.parse(SHOP))
    async with client_for(gateway) as client:
        preflight = await client.options(
            "/api/events", headers={"Origin": SHOP, "Access-Control-Request-Method": "POST"}
        )
        actual = await client.post("/api/events", content=b"{}", headers={"Origin": SHOP})
        foreign = await client.post("/api/events", content=b"{}", headers={"Origin": "https://evil.example"})

    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == SHOP
    assert echo.calls == 2  # the two POSTs, not the preflight
    assert actual.headers.get_list("access-control-allow-origin") == [SHOP]
    assert foreign.headers.get_list("access-control-allow-origin") == ["https://set-by.function"]
