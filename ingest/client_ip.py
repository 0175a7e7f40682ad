"""Which address a request comes from, for rate limiting and fraud scoring.

An Azure Functions HTTP request carries no socket address: the platform's front end
appends the address of the peer it accepted the connection from to `X-Forwarded-For`
(as `ip:port`), and the local host does the same. So the rightmost entry is the socket
peer, and it is the client unless it is one of `CLOUDSCALE_TRUSTED_PROXIES`. Only then is
the entry to its left believed, and so on leftwards; anything further left than the first
untrusted hop was written by the client and is ignored (it could say anything).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["UNKNOWN_CLIENT", "client_ip"]

UNKNOWN_CLIENT = "unknown"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_ip(forwarded_for: str | None, trusted_proxies: Sequence[IpNetwork]) -> str:
    """The client's address, normalised (IPv4-mapped IPv6 as IPv4), from `X-Forwarded-For`."""
    hops = [hop for hop in (_parse_hop(part) for part in (forwarded_for or "").split(",")) if hop != ""]
    if not hops:
        return UNKNOWN_CLIENT
    client = _parse_address(hops[-1])
    if client is None:
        return UNKNOWN_CLIENT
    for hop in reversed(hops[:-1]):
        if not _is_trusted(client, trusted_proxies):
            break
        previous = _parse_address(hop)
        if previous is None:
            # A trusted proxy wrote something unreadable: the proxy is the best we know.
            break
        client = previous
    return str(client)


def _is_trusted(address: IpAddress, trusted_proxies: Sequence[IpNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in trusted_proxies)


def _parse_hop(part: str) -> str:
    """Strip the port from `1.2.3.4:5678` and `[::1]:5678`; keep a bare IPv6 address."""
    hop = part.strip()
    if hop.startswith("["):
        return hop[1:].split("]", 1)[0]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop


def _parse_address(text: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
