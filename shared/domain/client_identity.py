"""Who a client is, for per-client state, without keeping its address.

One client holds many addresses: a whole IPv6 prefix (a /64 is one subscriber's LAN, and
privacy extensions rotate the address inside it), a zone id on a link-local address, and an
IPv4 address written as IPv6 (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`,
NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`, Teredo). `canonical_client` folds all of
them into one canonical text; `ClientKeyer` turns that into

- `key`: an HMAC of the canonical text under a secret, the only client key any store holds
  (rate-limit buckets, the velocity window, distinct users, security log lines), and
- `network`: the anonymised network (IPv4 /24, IPv6 /48) enrichment stores with the event.

No I/O; the secret is passed in (see `shared.adapters.instance.client_key_secret`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_IPV6_PREFIX",
    "UNKNOWN_CLIENT_KEY_INPUT",
    "UNKNOWN_NETWORK",
    "ClientIdentity",
    "ClientKeyer",
    "anonymize_address",
    "canonical_client",
    "parse_client_address",
]

DEFAULT_IPV6_PREFIX: Final = 64
UNKNOWN_NETWORK: Final = "unknown"
"""The network when the client is not an address (ingest could not tell who called)."""
UNKNOWN_CLIENT_KEY_INPUT: Final = "unknown"
"""Every caller whose address is unreadable shares one bucket: they cannot be told apart."""

_IPV4_NETWORK_PREFIX: Final = 24
_IPV6_NETWORK_PREFIX: Final = 48
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052
_LOW_32_BITS: Final = 0xFFFF_FFFF

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_client_address(text: str) -> IpAddress | None:
    """The address in `text` with any zone id dropped and an embedded IPv4 address unwrapped.

    None when `text` is not an address.
    """
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        return address
    # Rebuilt from the integer: the zone id (`fe80::1%eth0`) is not part of the address.
    address = ipaddress.IPv6Address(int(address))
    embedded = _embedded_ipv4(address)
    return embedded if embedded is not None else address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    value = int(address)
    # IPv4-compatible (::a.b.c.d, deprecated but routable by some stacks); `::` and `::1` are not.
    if value >> 32 == 0 and value > 1:
        return ipaddress.IPv4Address(value)
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(value & _LOW_32_BITS)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's public IPv4 address (the server is [0])
    return None


def canonical_client(text: str, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """One text per client: `203.0.113.7`, `2001:db8:1:2::/64`, or `unknown`."""
    address = parse_client_address(text)
    if address is None:
        return UNKNOWN_CLIENT_KEY_INPUT
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    return str(ipaddress.IPv6Network((int(address), ipv6_prefix), strict=False))


def anonymize_address(text: str) -> str:
    """The client's network: `203.0.113.7` -> `203.0.113.0/24`, `2001:db8:1:2::5` -> `2001:db8:1::/48`."""
    address = parse_client_address(text)
    if address is None:
        return UNKNOWN_NETWORK
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.IPv4Network((int(address), _IPV4_NETWORK_PREFIX), strict=False))
    return str(ipaddress.IPv6Network((int(address), _IPV6_NETWORK_PREFIX), strict=False))


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """What ingest keeps and forwards about a client instead of its address."""

    key: str
    """32 hex digits of HMAC-SHA256 over the canonical client: equal for one client's addresses."""
    network: str
    """The anonymised network (IPv4 /24, IPv6 /48) or `unknown`."""


class ClientKeyer:
    """Turns a client address into its `ClientIdentity` under one secret.

    Keyed, because an unkeyed hash of an IPv4 address is reversed by hashing all 2^32 of
    them. Every instance must use the same secret, so that a client has one bucket.
    """

    def __init__(self, secret: bytes, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> None:
        if len(secret) < 16:
            raise ValueError("the client-key secret must be at least 16 bytes")
        if not 1 <= ipv6_prefix <= 128:
            raise ValueError("the IPv6 prefix must be between 1 and 128")
        self._secret = secret
        self._ipv6_prefix = ipv6_prefix

    def identify(self, address: str) -> ClientIdentity:
        """The key and network of the client at `address` (any spelling)."""
        canonical = canonical_client(address, self._ipv6_prefix)
        digest = hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()[:32]
        return ClientIdentity(key=digest, network=anonymize_address(address))

    def __repr__(self) -> str:
        # Never the secret, in a log line or a traceback.
        return f"ClientKeyer(ipv6_prefix={self._ipv6_prefix})"
