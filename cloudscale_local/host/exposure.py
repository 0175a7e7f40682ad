"""Whether the host may listen where it is asked to, given how producers are authenticated.

With write keys optional (the embedded backend's open mode) a request without a key is
accepted for whatever tenant its body names: fine on loopback, where only this machine's
users connect, never on an address others can reach. So `cloudscale run --host <not loopback>`
refuses to start until keys are required (`docs/tradeoffs.md`, "Open mode").
"""

from __future__ import annotations

import ipaddress

from shared.settings import Settings, SettingsError

__all__ = ["is_loopback_host", "require_keys_off_loopback", "write_keys_line"]


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1); False for any other name or address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything


def require_keys_off_loopback(settings: Settings, host: str) -> None:
    """Raise `SettingsError` when `host` is reachable from other machines and keys are optional."""
    if settings.write_keys_required or is_loopback_host(host):
        return
    raise SettingsError(
        f"--host {host} listens beyond this machine, but write keys are optional (open mode: anyone who can "
        "connect could write to any tenant); set CLOUDSCALE_WRITE_KEYS=required, or listen on 127.0.0.1"
    )


def write_keys_line(settings: Settings) -> str:
    """The banner's line naming how producers are authenticated: loudly when they need not be."""
    if settings.write_keys_required:
        return (
            f"  write keys: required (a revoked key or suspended tenant is refused within "
            f"{settings.write_key_cache_seconds:g} s)"
        )
    return (
        "  write keys: OPTIONAL (embedded backend): requests without a key are accepted for the tenant their "
        "body names; CLOUDSCALE_WRITE_KEYS=required to refuse them"
    )
