"""Browser producers through the local host over a real socket: the host's CORS middleware
(preflights answered before routing, the allowed origin set on answers) and beacons' `text/plain`."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.e2e.conftest import INGEST_ONLY, LocalHost, start_host

pytestmark = pytest.mark.e2e

SHOP = "https://shop.example"
FOREIGN = "https://evil.example"
EVENT = {"eventType": "page_view", "tenantId": "acme", "url": "/home"}
PROXIES = {"CLOUDSCALE_TRUSTED_PROXIES": "127.0.0.1/32,::1/128", **INGEST_ONLY}
_ips = (f"198.51.100.{n}" for n in itertools.count(101))


def preflight(client: httpx.Client, path: str, origin: str) -> httpx.Response:
    """What a browser sends before a `fetch` POST with JSON and an Authorization header."""
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


@pytest.fixture(scope="module")
def any_origin_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    """`cloudscale run` as it starts by default: the CORS middleware on, any origin (infra/'s default)."""
    running = start_host(tmp_path_factory.mktemp("data"), **PROXIES)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def shop_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    running = start_host(tmp_path_factory.mktemp("data"), "--cors", SHOP, **PROXIES)
    yield running
    running.stop()


def test_the_banner_names_the_cors_policy(any_origin_host: LocalHost, shop_host: LocalHost) -> None:
    assert any("CORS: any origin" in line for line in any_origin_host.output)
    assert any(f"CORS: {SHOP}" in line for line in shop_host.output)


def test_a_preflight_is_answered_204_with_the_requested_method_and_headers(any_origin_host: LocalHost) -> None:
    with any_origin_host.client() as client:
        response = preflight(client, "/api/events", SHOP)

    assert response.status_code == 204
    assert response.content == b""
    assert cors_headers(response) == {
        "access-control-allow-origin": "*",
        "access-control-allow-headers": "authorization,content-type",
        "access-control-allow-methods": "POST",
    }


def test_every_preflight_is_answered_before_routing(any_origin_host: LocalHost) -> None:
    # The host's middleware runs ahead of route matching: a path no function serves gets the same 204.
    with any_origin_host.client() as client:
        nowhere = preflight(client, "/api/nothing-here", SHOP)
        plain_options = client.options("/api/events", headers={"Origin": SHOP})

    assert nowhere.status_code == 204
    assert nowhere.headers["access-control-allow-origin"] == "*"
    # OPTIONS without Access-Control-Request-Method is no preflight: routed, and events lists only POST.
    assert plain_options.status_code == 404


def test_a_foreign_origin_gets_a_bare_204(shop_host: LocalHost) -> None:
    with shop_host.client() as client:
        foreign = preflight(client, "/api/events", FOREIGN)
        allowed = preflight(client, "/api/events", SHOP)

    assert foreign.status_code == 204
    assert cors_headers(foreign) == {}
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == SHOP
    assert "vary" not in allowed.headers  # one origin: no Vary, as ASP.NET Core's CorsService


def test_an_answer_to_an_allowed_origin_carries_it(shop_host: LocalHost) -> None:
    with shop_host.client() as client:
        allowed = client.post(
            "/api/events",
            content=orjson.dumps(EVENT),
            headers={"Content-Type": "application/json", "Origin": SHOP, "X-Forwarded-For": next(_ips)},
        )
        foreign = client.get("/api/health/live", headers={"Origin": FOREIGN})
        no_origin = client.get("/api/health/live")

    assert allowed.status_code == 202, allowed.text
    assert allowed.headers["access-control-allow-origin"] == SHOP
    assert "access-control-allow-origin" not in foreign.headers
    assert "access-control-allow-origin" not in no_origin.headers


def test_with_the_middleware_off_a_preflight_is_routed_like_any_request(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    host = start_host(tmp_path_factory.mktemp("data"), "--cors", "", **PROXIES)
    try:
        with host.client() as client:
            response = preflight(client, "/api/events", SHOP)
    finally:
        host.stop()

    assert any("CORS: off" in line for line in host.output)
    # As `func start` without `--cors`: no middleware, and the route lists POST only.
    assert response.status_code == 404
    assert cors_headers(response) == {}


def test_a_beacons_text_plain_body_is_read_as_json(any_origin_host: LocalHost) -> None:
    # navigator.sendBeacon(url, string) sends this Content-Type and cannot send another.
    with any_origin_host.client() as client:
        response = client.post(
            "/api/events",
            content=orjson.dumps(EVENT),
            headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": SHOP, "X-Forwarded-For": next(_ips)},
        )

    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1
    assert response.headers["access-control-allow-origin"] == "*"
