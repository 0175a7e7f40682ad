"""Enrichment: what the process stage learns about an event from its envelope.

- `anonymize_ip`: the client's network, never its address (IPv4 /24, IPv6 /48); ingest
  puts it in the envelope, so the process stage never sees the address.
- `parse_user_agent`: browser, OS, device and a bot verdict, by the maintained `ua-parser`
  (uap-core's regexes), cached because the same few user agents repeat.
- `enrich`: all of it, plus the receive, enqueue and process times and the queue latency.

No Azure import, no I/O; times are passed in.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Final

import ua_parser

from shared.domain.client_identity import UNKNOWN_NETWORK, anonymize_address
from shared.domain.envelope import Envelope
from shared.domain.stored_event import Enrichment, ParsedUserAgent

__all__ = [
    "BOT_DEVICE_FAMILY",
    "HTTP_CLIENT_FAMILIES",
    "MAX_PARSED_USER_AGENT_LENGTH",
    "UNKNOWN_NETWORK",
    "USER_AGENT_CACHE_SIZE",
    "anonymize_ip",
    "enrich",
    "parse_user_agent",
]

BOT_DEVICE_FAMILY: Final = "Spider"
"""uap-core's device family for bots and crawlers (Googlebot, bingbot, AhrefsBot, ...)."""

HTTP_CLIENT_FAMILIES: Final = frozenset({"Python-urllib", "Java"})
"""HTTP client libraries uap-core files under "Spider". Producers are apps built on such
libraries, so they are not bots (curl, okhttp, python-requests, Go-http-client, axios,
node-fetch are not called spiders in the first place)."""

MAX_PARSED_USER_AGENT_LENGTH: Final = 1024
"""Only this many leading characters are parsed (and cached). Real user agents are a few
hundred characters; a longer header is hostile or broken, and this bounds both the regex work
on it and the cache's memory."""

USER_AGENT_CACHE_SIZE: Final = 1024
"""Distinct user agents whose parse is kept (least recently used dropped first)."""


def anonymize_ip(ip: str) -> str:
    """The client's network: `203.0.113.7` -> `203.0.113.0/24`, `2001:db8:1:2::5` -> `2001:db8:1::/48`.

    An IPv4 address in any IPv6 spelling (mapped, compatible, NAT64) counts as IPv4, a zone id
    is dropped; anything that is not an address gives `"unknown"`.
    """
    return anonymize_address(ip)


def parse_user_agent(user_agent: str | None) -> ParsedUserAgent | None:
    """Browser, OS, device and bot verdict of a User-Agent header; None without one.

    A header the parser cannot read still gives a `ParsedUserAgent`, with every field unknown:
    "sent something unreadable" differs from "sent nothing".
    """
    if user_agent is None or not user_agent.strip():
        return None
    return _parse_cached(user_agent[:MAX_PARSED_USER_AGENT_LENGTH])


@functools.lru_cache(maxsize=USER_AGENT_CACHE_SIZE)
def _parse_cached(user_agent: str) -> ParsedUserAgent:
    # ParsedUserAgent is frozen, so one instance can be shared by every event that repeats it.
    result = _parser().parse(user_agent)
    browser, os, device = result.user_agent, result.os, result.device
    is_bot = (
        device is not None
        and device.family == BOT_DEVICE_FAMILY
        and (browser is None or browser.family not in HTTP_CLIENT_FAMILIES)
    )
    return ParsedUserAgent(
        browser=browser.family if browser else None,
        browser_version=_version(browser.major, browser.minor, browser.patch, browser.patch_minor) if browser else None,
        os=os.family if os else None,
        os_version=_version(os.major, os.minor, os.patch, os.patch_minor) if os else None,
        device=device.family if device else None,
        is_bot=is_bot,
    )


@functools.cache
def _parser() -> ua_parser.Parser:
    """Built on first use (about 0.1 s): the ua-parser-rs resolver when installed, else pure Python.

    No cache of the library's own: `_parse_cached` caches the finished result instead.
    """
    try:
        from ua_parser.regex import Resolver as RegexResolver  # needs the ua-parser-rs wheel
    except ImportError:
        return ua_parser.Parser(ua_parser.BasicResolver(ua_parser.load_builtins()))
    return ua_parser.Parser(RegexResolver(ua_parser.load_lazy_builtins()))


def _version(*parts: str | None) -> str | None:
    """`("131", "0", None, None)` -> "131.0"; the parts up to the first missing one."""
    present: list[str] = []
    for part in parts:
        if part is None:
            break
        present.append(part)
    return ".".join(present) or None


def enrich(envelope: Envelope, *, processed_at: datetime, enqueued_at: datetime | None) -> Enrichment:
    """What the process stage adds to an event: client network, user agent, times, latency.

    `queueLatencyMs` is processedAt minus receivedAt; clocks of different machines can put
    the second before the first, so it is clamped to 0 rather than reported negative.
    """
    if processed_at.tzinfo is None:
        raise ValueError("processed_at must be timezone-aware")
    latency_ms = (processed_at - envelope.received_at).total_seconds() * 1000
    return Enrichment(
        client_network=envelope.client_network,
        user_agent=envelope.user_agent,
        agent=parse_user_agent(envelope.user_agent),
        received_at=envelope.received_at,
        enqueued_at=enqueued_at,
        processed_at=processed_at,
        queue_latency_ms=max(0.0, round(latency_ms, 3)),
    )
