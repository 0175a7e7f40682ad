"""Enrichment (`shared.domain.enrichment`): client network, user agent, times.

Pure: every time is passed in. User agents go through the real parser (`ua-parser`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.domain.enrichment import (
    MAX_PARSED_USER_AGENT_LENGTH,
    USER_AGENT_CACHE_SIZE,
    anonymize_ip,
    enrich,
    parse_user_agent,
)
from shared.domain.envelope import Envelope
from shared.domain.events import Event
from shared.domain.stored_event import Enrichment, ParsedUserAgent

RECEIVED_AT = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


# --- anonymize_ip --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("203.0.113.7", "203.0.113.0/24"),
        ("203.0.113.255", "203.0.113.0/24"),
        ("10.1.2.3", "10.1.2.0/24"),
        ("0.0.0.0", "0.0.0.0/24"),
        (" 203.0.113.7 ", "203.0.113.0/24"),
    ],
)
def test_an_ipv4_address_becomes_its_slash_24(ip: str, network: str) -> None:
    assert anonymize_ip(ip) == network


@pytest.mark.parametrize(
    ("ip", "network"),
    [
        ("2001:db8:1:2::5", "2001:db8:1::/48"),
        ("2001:0db8:abcd:ffff:1:2:3:4", "2001:db8:abcd::/48"),
        ("2001:db8::1", "2001:db8::/48"),
        ("::1", "::/48"),
        ("fe80::1%eth0", "fe80::/48"),
    ],
    ids=["short", "full-length", "zero-third-group", "loopback", "scoped"],
)
def test_an_ipv6_address_becomes_its_slash_48(ip: str, network: str) -> None:
    assert anonymize_ip(ip) == network


@pytest.mark.parametrize(
    "ip", ["::ffff:203.0.113.7", "::FFFF:cb00:7107", "::203.0.113.7", "64:ff9b::203.0.113.7", "2002:cb00:7107::1"]
)
def test_an_ipv4_address_in_an_ipv6_spelling_is_treated_as_ipv4(ip: str) -> None:
    assert anonymize_ip(ip) == "203.0.113.0/24"


@pytest.mark.parametrize(
    "ip",
    ["unknown", "", "   ", "not-an-ip", "203.0.113", "203.0.113.7:8080", "[2001:db8::1]", "999.1.1.1", "2001:db8::g"],
)
def test_anything_that_is_not_an_address_is_unknown(ip: str) -> None:
    assert anonymize_ip(ip) == "unknown"


# --- parse_user_agent -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("user_agent", [None, "", "   "])
def test_no_user_agent_parses_to_none(user_agent: str | None) -> None:
    assert parse_user_agent(user_agent) is None


def test_a_desktop_browser_is_read_with_its_versions() -> None:
    assert parse_user_agent(CHROME) == ParsedUserAgent(
        browser="Chrome", browser_version="131.0.0.0", os="Windows", os_version="10", device=None, is_bot=False
    )


def test_a_phone_browser_is_read_with_its_device() -> None:
    assert parse_user_agent(IPHONE) == ParsedUserAgent(
        browser="Mobile Safari", browser_version="17.6", os="iOS", os_version="17.6", device="iPhone", is_bot=False
    )


@pytest.mark.parametrize(
    ("user_agent", "family"),
    [
        (GOOGLEBOT, "Googlebot"),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bingbot"),
        ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "AhrefsBot"),
    ],
)
def test_crawlers_are_bots_by_the_parsers_spider_device(user_agent: str, family: str) -> None:
    parsed = parse_user_agent(user_agent)

    assert parsed is not None
    assert (parsed.browser, parsed.device, parsed.is_bot) == (family, "Spider", True)


def test_headless_chrome_is_not_a_bot_to_the_parser() -> None:
    # The fraud rule's substring list catches it; the parser reports what it is.
    parsed = parse_user_agent(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.109 "
        "Safari/537.36"
    )

    assert parsed is not None
    assert (parsed.browser, parsed.is_bot) == ("HeadlessChrome", False)


@pytest.mark.parametrize(
    ("user_agent", "family"),
    [
        ("curl/8.5.0", "curl"),
        ("python-requests/2.32.3", "Python Requests"),
        ("okhttp/4.12.0", "okhttp"),
        ("Go-http-client/1.1", "Go-http-client"),
        ("axios/1.7.9", "axios"),
        ("python-httpx/0.28.1", None),
        ("node-fetch/1.0 (+https://github.com/bitinn/node-fetch)", None),
        # uap-core files these two under "Spider"; they are libraries apps use.
        ("Python-urllib/3.11", "Python-urllib"),
        ("Java/17.0.2", "Java"),
    ],
)
def test_http_client_libraries_are_not_bots(user_agent: str, family: str | None) -> None:
    parsed = parse_user_agent(user_agent)

    assert parsed is not None
    assert (parsed.browser, parsed.is_bot) == (family, False)


def test_an_unreadable_user_agent_is_kept_apart_from_a_missing_one() -> None:
    assert parse_user_agent("\x00\xff garbage") == ParsedUserAgent()


def test_a_repeated_user_agent_is_served_from_the_cache() -> None:
    first = parse_user_agent(CHROME + " cache-test")

    assert parse_user_agent(CHROME + " cache-test") is first


def test_the_cache_is_bounded() -> None:
    # GIVEN a parsed user agent, then as many other distinct ones as the cache holds
    first = parse_user_agent(CHROME + " bounded-test")
    for n in range(USER_AGENT_CACHE_SIZE):
        parse_user_agent(f"{CHROME} filler-{n}")

    # THEN the first was dropped: parsed again, equal but a new object
    again = parse_user_agent(CHROME + " bounded-test")
    assert again == first
    assert again is not first


def test_only_the_leading_part_of_a_very_long_user_agent_is_parsed() -> None:
    padding = "x" * MAX_PARSED_USER_AGENT_LENGTH

    # Two headers that differ only past the limit share one parse.
    assert parse_user_agent(f"{CHROME} {padding}a") is parse_user_agent(f"{CHROME} {padding}b")
    assert parse_user_agent(f"{CHROME} {padding}") == parse_user_agent(CHROME)


# --- enrich --------------------------------------------------------------------------------------------------------


def envelope(**overrides: Any) -> Envelope:
    fields: dict[str, Any] = {
        "event": Event.model_validate({"eventType": "page_view", "tenantId": "acme"}),
        "received_at": RECEIVED_AT,
        "client_network": "203.0.113.0/24",
        "client_key": "0123456789abcdef0123456789abcdef",
        "user_agent": CHROME,
        "ip_requests_last_minute": 1,
    }
    fields.update(overrides)
    return Envelope(**fields)


def test_enrich_fills_every_field_from_the_envelope_and_the_times_given() -> None:
    enqueued_at = RECEIVED_AT + timedelta(milliseconds=20)
    processed_at = RECEIVED_AT + timedelta(seconds=1, milliseconds=500)

    result = enrich(envelope(), processed_at=processed_at, enqueued_at=enqueued_at)

    assert result == Enrichment(
        client_network="203.0.113.0/24",
        user_agent=CHROME,
        agent=parse_user_agent(CHROME),
        received_at=RECEIVED_AT,
        enqueued_at=enqueued_at,
        processed_at=processed_at,
        queue_latency_ms=1500.0,
    )


def test_enrich_never_stores_the_raw_ip() -> None:
    document = enrich(envelope(), processed_at=RECEIVED_AT, enqueued_at=None).model_dump_json(by_alias=True)

    assert "203.0.113.7" not in document
    assert '"clientNetwork":"203.0.113.0/24"' in document


def test_queue_latency_is_clamped_to_zero_when_the_clocks_disagree() -> None:
    # GIVEN a process-stage clock 2 s behind ingest's
    result = enrich(envelope(), processed_at=RECEIVED_AT - timedelta(seconds=2), enqueued_at=None)

    # THEN the latency is 0, not negative
    assert result.queue_latency_ms == 0.0


def test_queue_latency_compares_instants_across_time_zones() -> None:
    processed_at = datetime(2026, 1, 31, 13, 0, 0, 250_000, tzinfo=timezone(timedelta(hours=1)))

    assert enrich(envelope(), processed_at=processed_at, enqueued_at=None).queue_latency_ms == 250.0


def test_enrich_without_a_user_agent_or_a_known_client() -> None:
    result = enrich(envelope(user_agent=None, client_network="unknown"), processed_at=RECEIVED_AT, enqueued_at=None)

    assert (result.user_agent, result.agent, result.client_network, result.enqueued_at) == (None, None, "unknown", None)


def test_a_naive_processing_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        enrich(envelope(), processed_at=datetime(2026, 1, 31, 12, 0), enqueued_at=None)
