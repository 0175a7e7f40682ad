"""Which callers the local host serves `auth_level=ADMIN` functions to: this machine only.

On Azure an admin-level function needs the app's master key (`x-functions-key` or `code`);
Core Tools disables authorization when it runs locally, so there any caller that can reach
the port may call it. The local host is stricter, never more permissive: it checks no key
either, but serves an admin-level function only to a loopback peer that relays for nobody
(no `X-Forwarded-For` or `Forwarded` header: a proxy on this machine may be relaying a request
from anywhere). Everyone else gets 403 with the reason. Anonymous and function-level functions
are served to every caller, as before.
"""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = ["ADMIN_LEVEL", "admin_refusal"]

ADMIN_LEVEL = "ADMIN"
_RELAY_HEADERS = (b"x-forwarded-for", b"forwarded")


def admin_refusal(scope: dict[str, Any]) -> str | None:
    """Why this request may not call an admin-level function here, or None if it may."""
    client = scope.get("client")
    if not client or not _is_loopback(str(client[0])):
        return "admin-level functions are served to this machine's loopback clients only"
    if any(name.lower() in _RELAY_HEADERS for name, _ in scope.get("headers", ())):
        return "admin-level functions are not served through a proxy (the request carries a forwarding header)"
    return None


def _is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
