"""Browser producers through the local host over a real socket: the host's CORS middleware
(preflights answered before routing, the allowed origin set on answers) and beacons' `text/plain`."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from shared.adapters.tenants.embedded_registry import REGISTRY_FILE, EmbeddedTenantRegistry
from shared.domain.write_keys import MAX_LIVE_KEYS_PER_KIND, Tenant, issue_key
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
        allowed = client.get("/api/health/live", headers={"Origin": SHOP})
        foreign = client.get("/api/health/live", headers={"Origin": FOREIGN})
        no_origin = client.get("/api/health/live")

    assert allowed.status_code == 200, allowed.text
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


def test_a_text_plain_body_is_read_as_json(any_origin_host: LocalHost) -> None:
    # navigator.sendBeacon(url, string) sends this Content-Type and cannot send another.
    with any_origin_host.client() as client:
        response = client.post(
            "/api/events",
            content=orjson.dumps(EVENT),
            headers={"Content-Type": "text/plain;charset=UTF-8", "X-Forwarded-For": next(_ips)},
        )

    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1


def test_a_web_page_cannot_write_without_a_key_even_in_open_mode(any_origin_host: LocalHost) -> None:
    # Any page the developer visits could post a text/plain body to the loopback host with no
    # preflight; open mode is for the tools on the machine, which send no Origin.
    with any_origin_host.client() as client:
        response = client.post(
            "/api/events",
            content=orjson.dumps(EVENT),
            headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": SHOP, "X-Forwarded-For": next(_ips)},
        )

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "missing_key"
    assert "browser key" in response.json()["message"]
    assert response.headers["access-control-allow-origin"] == "*"  # the page can read why


# --- Browser keys: the app enforces each key's origins -----------------------------------------


@dataclass(frozen=True)
class ShopKeys:
    browser: str
    """Bound to `SHOP`: public, in the shop's pages."""
    server: str


def create_shop_keys(data_dir: Path) -> ShopKeys:
    """Tenant `shop` with a browser key bound to `SHOP` and a server key, in the host's registry file."""

    async def create() -> ShopKeys:
        registry = EmbeddedTenantRegistry(data_dir / REGISTRY_FILE)
        now = datetime.now(UTC)
        try:
            await registry.create_tenant(Tenant("shop", "active", now))
            browser = issue_key("shop", "browser", created_at=now, origins=(SHOP,))
            server = issue_key("shop", "server", created_at=now)
            for issued in (browser, server):
                await registry.add_key(issued.record, max_live_per_kind=MAX_LIVE_KEYS_PER_KIND)
        finally:
            await registry.close()
        return ShopKeys(browser.key, server.key)

    return asyncio.run(create())


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalHost, ShopKeys]]:
    """The whole pipeline (so events are stored), the CORS middleware as deployed, and the shop's keys."""
    data_dir = tmp_path_factory.mktemp("data")
    keys = create_shop_keys(data_dir)
    running = start_host(data_dir, CLOUDSCALE_TRUSTED_PROXIES="127.0.0.1/32,::1/128")
    yield running, keys
    running.stop()


def wait_for_stored(client: httpx.Client, path: str, server_key: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(path, headers={"Authorization": f"Bearer {server_key}"})
        if response.status_code == 200:
            document: dict[str, Any] = response.json()
            return document
        assert response.status_code == 404, response.text
        if time.monotonic() > deadline:
            pytest.fail(f"{path} was not stored within {timeout} s")
        time.sleep(0.05)


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code


def test_a_beacon_with_the_browser_key_in_the_url_is_stored_under_the_keys_tenant(
    keyed: tuple[LocalHost, ShopKeys],
) -> None:
    host, keys = keyed
    beacon = {"eventType": "page_view", "url": "/checkout"}  # no tenantId: the key's tenant fills it in
    with host.client() as client:
        # What navigator.sendBeacon(`${url}?writeKey=${key}`, JSON.stringify(event)) sends from the shop.
        response = client.post(
            "/api/events",
            params={"writeKey": keys.browser},
            content=orjson.dumps(beacon),
            headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": SHOP, "X-Forwarded-For": next(_ips)},
        )
        assert response.status_code == 202, response.text
        event_id = response.json()["results"][0]["eventId"]
        stored = wait_for_stored(client, f"/api/events/shop/{event_id}", keys.server)

    assert response.headers["access-control-allow-origin"] == "*"
    assert stored["tenantId"] == "shop"
    assert stored["url"] == "/checkout"


def test_a_fetch_with_the_browser_key_in_the_authorization_header_is_accepted(
    keyed: tuple[LocalHost, ShopKeys],
) -> None:
    host, keys = keyed
    with host.client() as client:
        response = client.post(
            "/api/events",
            content=orjson.dumps({"eventType": "click", "tenantId": "shop"}),
            headers={
                "Authorization": f"Bearer {keys.browser}",
                "Content-Type": "application/json",
                "Origin": SHOP,
                "X-Forwarded-For": next(_ips),
            },
        )

    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    "origin",
    [FOREIGN, None, f"{SHOP},{SHOP}", "https://shop.example.evil.example", "http://shop.example"],
    ids=["foreign", "none", "two-origin-lines", "suffix", "other-scheme"],
)
def test_a_browser_key_from_an_origin_it_is_not_bound_to_is_refused(
    keyed: tuple[LocalHost, ShopKeys], origin: str | None
) -> None:
    host, keys = keyed
    headers = [("Content-Type", "text/plain;charset=UTF-8"), ("X-Forwarded-For", next(_ips))]
    # Two Origin lines reach the app as one "a,b" value (as the host joins them), matching no origin.
    headers += [("Origin", part) for part in (origin or "").split(",") if part]
    with host.client() as client:
        response = client.post(
            "/api/events", params={"writeKey": keys.browser}, content=orjson.dumps(EVENT), headers=headers
        )

    assert_refused(response, 403, "origin_not_allowed")
    assert keys.browser not in response.text


def test_a_server_key_in_the_url_is_refused_without_being_checked(keyed: tuple[LocalHost, ShopKeys]) -> None:
    host, keys = keyed
    with host.client() as client:
        response = client.post(
            "/api/events",
            params={"writeKey": keys.server},
            content=orjson.dumps({"eventType": "click", "tenantId": "shop"}),
            headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": SHOP, "X-Forwarded-For": next(_ips)},
        )

    assert_refused(response, 401, "invalid_key")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert keys.server not in response.text
