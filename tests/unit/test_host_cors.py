"""The local host's CORS policy (`cloudscale_local.host.cors`), as ASP.NET Core's `CorsService`
applies the host's policy: allowed origins, any header, any method, no credentials."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cloudscale_local.host.cors import CorsPolicy, request_header

SHOP = "https://shop.example"


def policy(text: str) -> CorsPolicy:
    parsed = CorsPolicy.parse(text)
    assert parsed is not None
    return parsed


@pytest.mark.parametrize("text", ["", " ", ",", " , "])
def test_a_list_without_origins_turns_the_middleware_off(text: str) -> None:
    assert CorsPolicy.parse(text) is None


def test_origins_are_split_trimmed_lowercased_and_deduplicated() -> None:
    assert policy(" https://Shop.Example ,https://app.example,https://shop.example").origins == (
        SHOP,
        "https://app.example",
    )


def test_star_alone_is_any_origin_and_answers_with_a_star() -> None:
    any_origin = policy("*")

    assert any_origin.any_origin
    assert any_origin.preflight_headers("https://anywhere.example", "POST", None) == [
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-methods", b"POST"),
    ]


def test_star_beside_other_origins_is_not_any_origin() -> None:
    # `CorsPolicy.AllowAnyOrigin` holds only when the one origin is "*".
    mixed = policy(f"*,{SHOP}")

    assert not mixed.any_origin
    assert not mixed.allows("https://anywhere.example")
    assert mixed.allows(SHOP)


def test_an_allowed_preflight_echoes_the_requested_method_and_headers_joined_without_spaces() -> None:
    headers = policy(SHOP).preflight_headers(SHOP, "POST", "content-type, authorization")

    assert headers == [
        (b"access-control-allow-origin", SHOP.encode()),
        (b"access-control-allow-headers", b"content-type,authorization"),
        (b"access-control-allow-methods", b"POST"),
    ]


@pytest.mark.parametrize("origin", ["https://evil.example", "HTTPS://SHOP.EXAMPLE", f"{SHOP},{SHOP}", ""])
def test_a_foreign_origin_gets_no_cors_headers(origin: str) -> None:
    # Origins compare exactly; two Origin lines arrive as one "a,b" value, which matches nothing.
    assert policy(SHOP).preflight_headers(origin, "POST", "authorization") == []


def test_vary_origin_only_when_the_policy_names_more_than_one_origin() -> None:
    one = policy(SHOP).preflight_headers(SHOP, "POST", None)
    two = policy(f"{SHOP},https://app.example").preflight_headers(SHOP, "POST", None)

    assert (b"vary", b"Origin") not in one
    assert (b"vary", b"Origin") in two


def sent_headers(cors: CorsPolicy, origin: str, app_headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def respond() -> None:
        wrapped = cors.wrap_send(send, origin)
        await wrapped({"type": "http.response.start", "status": 202, "headers": app_headers})
        await wrapped({"type": "http.response.body", "body": b"{}"})

    asyncio.run(respond())
    assert messages[1] == {"type": "http.response.body", "body": b"{}"}
    headers: list[tuple[bytes, bytes]] = messages[0]["headers"]
    return headers


def test_an_allowed_origin_overwrites_the_functions_own_allow_origin_and_appends_vary() -> None:
    app = [(b"content-type", b"application/json"), (b"Access-Control-Allow-Origin", b"https://x"), (b"vary", b"Accept")]

    headers = sent_headers(policy(f"{SHOP},https://app.example"), SHOP, app)

    assert headers == [
        (b"content-type", b"application/json"),
        (b"vary", b"Accept"),
        (b"access-control-allow-origin", SHOP.encode()),
        (b"vary", b"Origin"),
    ]


def test_a_foreign_origin_leaves_the_functions_headers_alone() -> None:
    app = [(b"access-control-allow-origin", b"https://x")]

    assert sent_headers(policy(SHOP), "https://evil.example", app) == app


def test_repeated_request_headers_are_joined_with_a_bare_comma_skipping_empty_ones() -> None:
    scope = {"headers": [(b"origin", b"https://a"), (b"x", b"1"), (b"Origin", b""), (b"origin", b"https://b")]}

    assert request_header(scope, b"origin") == "https://a,https://b"
    assert request_header(scope, b"missing") is None
