"""Admin-level functions on the local host: served to this machine's loopback callers only.

Azure asks for the master key; Core Tools checks no key locally. The local host checks none
either but never serves an admin function to another machine, nor through a proxy."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import azure.functions as func
import httpx
import orjson
import pytest
import uvicorn

import function_app
from cloudscale_local.host.admin_access import admin_refusal
from cloudscale_local.host.functions import HttpFunction, index_functions
from cloudscale_local.host.gateway import Gateway
from cloudscale_local.host.http_limits import HttpLimits, server_config
from cloudscale_local.host.routing import RouteTemplate
from tests.waiting import wait_until


class Counted:
    """An HTTP function of a given auth level that answers 200 and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def function(self, route: str, auth_level: str) -> HttpFunction:
        async def handler(req: func.HttpRequest) -> func.HttpResponse:
            self.calls += 1
            return func.HttpResponse(b"{}", status_code=200, mimetype="application/json")

        return HttpFunction(route, RouteTemplate.compile(route), ("GET", "POST"), handler, "req", auth_level=auth_level)


def gateway_for(counted: Counted) -> Gateway:
    return Gateway([counted.function("admin", "ADMIN"), counted.function("open", "ANONYMOUS")])


def client_from(gateway: Gateway, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=gateway, client=(peer, 50000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7071", timeout=10)


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Counted]]:
    """The gateway on a real uvicorn socket on loopback: its base URL, and the functions' counter."""
    counted = Counted()
    # The host's own uvicorn settings: the real socket peer, never rewritten from X-Forwarded-For.
    server = uvicorn.Server(server_config(gateway_for(counted), HttpLimits()))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        await wait_until(lambda: server.started)
        host, port = listener.getsockname()
        yield f"http://{host}:{port}", counted
    finally:
        server.should_exit = True
        await serving


async def test_a_loopback_caller_is_served_through_a_real_socket(served: tuple[str, Counted]) -> None:
    url, counted = served
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post("/api/admin", content=b"{}")

    assert response.status_code == 200
    assert counted.calls == 1


async def test_a_request_relayed_by_a_proxy_on_this_machine_is_refused(served: tuple[str, Counted]) -> None:
    # GIVEN a loopback peer that says it relays for another address
    url, counted = served
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        relayed = await client.post("/api/admin", content=b"{}", headers={"X-Forwarded-For": "203.0.113.7"})
        forwarded = await client.get("/api/admin", headers={"Forwarded": "for=203.0.113.7"})
        open_route = await client.get("/api/open", headers={"X-Forwarded-For": "203.0.113.7"})

    # THEN the admin function is refused with the reason, and an anonymous one is still served
    assert relayed.status_code == 403
    assert relayed.json()["error"] == "forbidden"
    assert "proxy" in relayed.json()["message"]
    assert forwarded.status_code == 403
    assert open_route.status_code == 200
    assert counted.calls == 1


@pytest.mark.parametrize("peer", ["192.0.2.10", "10.0.0.1", "2001:db8::1", "::ffff:192.0.2.10"])
async def test_another_machine_gets_403_and_the_function_never_runs(peer: str) -> None:
    counted = Counted()
    async with client_from(gateway_for(counted), peer) as client:
        refused = await client.post("/api/admin", content=b'{"tenantId": "t"}')
        served = await client.get("/api/open")

    assert refused.status_code == 403
    assert orjson.loads(refused.content)["message"].startswith("admin-level functions are served")
    assert refused.headers["connection"] == "close"
    assert served.status_code == 200
    assert counted.calls == 1


@pytest.mark.parametrize("peer", ["127.0.0.1", "127.0.0.53", "::1", "::ffff:127.0.0.1"])
def test_every_loopback_form_is_local(peer: str) -> None:
    assert admin_refusal({"client": (peer, 1), "headers": []}) is None


def test_a_request_without_a_peer_address_is_refused() -> None:
    assert admin_refusal({"client": None, "headers": []}) is not None


def test_the_erasure_routes_are_admin_level_and_the_others_are_not() -> None:
    levels = {function.name: function.auth_level for function in index_functions(function_app.app).http}

    assert levels["create_erasure"] == "ADMIN"
    assert levels["get_erasure"] == "ADMIN"
    assert levels["get_event"] == "ANONYMOUS"
    assert [name for name, level in levels.items() if level == "ADMIN"] == ["create_erasure", "get_erasure"]
