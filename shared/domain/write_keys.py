"""Tenants and their write keys: what a key looks like, how it is kept, and what a tenant is.

A producer proves who it is with a write key, and the tenant its events land in is the key's,
never only what the body says. Two kinds:

- **server** keys are secrets, for back ends: `cs_sk_…`;
- **browser** keys are public by design (they ship in a web page), so each is bound to the
  origins it may be used from: `cs_bk_…`.

A key is `cs_<kind>_` followed by 48 lower-case base32 characters: the first 16 are the key id
(80 random bits, what the registry is searched by and what operators see), the other 32 the
secret (160 random bits). Only a SHA-256 hash of the whole key is kept: a key of that much
entropy cannot be found from its hash by guessing, so a slow password hash would only cost
every request time. The hash is compared in constant time.

Plain Python: no I/O, no Azure. The registry port (`shared.ports.TenantRegistry`) stores these
records; `shared.write_key_auth` checks presented keys against it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final, Literal
from urllib.parse import urlsplit

from shared.domain.ratelimit import MIN_TENANT_EVENTS_PER_MINUTE

__all__ = [
    "KEY_ID_LENGTH",
    "KEY_PREFIXES",
    "MAX_LIVE_KEYS_PER_KIND",
    "MAX_ORIGINS_PER_KEY",
    "IssuedKey",
    "KeyKind",
    "KeyStatus",
    "ParsedKey",
    "Tenant",
    "TenantStatus",
    "WriteKey",
    "hash_key",
    "issue_key",
    "normalise_origin",
    "origin_allowed",
    "parse_key",
]

KeyKind = Literal["server", "browser"]
KeyStatus = Literal["active", "revoked"]
TenantStatus = Literal["active", "suspended"]

KEY_PREFIXES: Final[dict[KeyKind, str]] = {"server": "cs_sk_", "browser": "cs_bk_"}
KEY_ID_LENGTH: Final = 16
_SECRET_LENGTH: Final = 32
_KEY = re.compile(r"cs_(sk|bk)_([a-z2-7]{16})([a-z2-7]{32})")
_KIND_BY_CODE: Final[dict[str, KeyKind]] = {"sk": "server", "bk": "browser"}

MAX_LIVE_KEYS_PER_KIND: Final = 2
"""Live keys a tenant may hold of each kind: two, so a key can be rotated without downtime
(create the new one, deploy it, revoke the old one), and no more, so a leaked key is never one
of many nobody tracks."""

MAX_ORIGINS_PER_KEY: Final = 20


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A presented string that has the shape of a write key (it may still be unknown)."""

    kind: KeyKind
    key_id: str
    key: str


def parse_key(presented: str) -> ParsedKey | None:
    """The key's kind and id, or None when `presented` is not shaped like a write key at all."""
    match = _KEY.fullmatch(presented)
    if match is None:
        return None
    return ParsedKey(_KIND_BY_CODE[match[1]], match[2], presented)


def hash_key(key: str) -> str:
    """The hash kept instead of the key: SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def _random_base32(length: int) -> str:
    # 5 bits a character; b32encode pads to whole 40-bit groups, so draw enough bytes and cut.
    return base64.b32encode(secrets.token_bytes(length * 5 // 8 + 1)).decode().lower()[:length]


@dataclass(frozen=True, slots=True)
class Tenant:
    """One tenant: the partition its events are stored under, and whether it may send."""

    tenant_id: str
    status: TenantStatus
    created_at: datetime
    events_per_minute: int | None = None
    """Its own quota of events a minute; None: the service's default (a setting)."""

    def __post_init__(self) -> None:
        # The rate limiter never enforces less than one full batch a minute: a lower quota
        # would be shown to operators and not be what is enforced.
        if self.events_per_minute is not None and self.events_per_minute < MIN_TENANT_EVENTS_PER_MINUTE:
            raise ValueError(
                f"a tenant's quota is at least {MIN_TENANT_EVENTS_PER_MINUTE} events a minute (one full batch); "
                f"got {self.events_per_minute}"
            )

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class WriteKey:
    """A write key as the registry keeps it: never the key itself, only its hash."""

    key_id: str
    tenant_id: str
    kind: KeyKind
    status: KeyStatus
    key_hash: str
    created_at: datetime
    origins: tuple[str, ...] = ()
    """Browser keys only: the origins (`https://shop.example`) pages using it may be served from."""
    label: str | None = None
    """A note for operators (where the key is deployed), never needed to use it."""
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"

    def matches(self, key: str) -> bool:
        """Whether `key` is this key: its hash compared in constant time."""
        return hmac.compare_digest(hash_key(key), self.key_hash)

    def revoked(self, at: datetime) -> WriteKey:
        return replace(self, status="revoked", revoked_at=at)

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a request from `origin` (its `Origin` header) may use this key (`origin_allowed`)."""
        return origin_allowed(self.kind, self.origins, origin)


def origin_allowed(kind: KeyKind, origins: tuple[str, ...], origin: str | None) -> bool:
    """Whether a request carrying `Origin: origin` may use a key of `kind` bound to `origins`.

    Server keys are not bound to origins. A browser key is used only from its own origins,
    and never without an `Origin` header, which browsers send on every cross-origin request
    (and on every POST): a browser key is public, so a request that does not say where it
    comes from could come from anywhere.
    """
    if kind == "server":
        return True
    if origin is None:
        return False
    try:
        return normalise_origin(origin) in origins
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made: the record to store and the key itself, shown once and never kept."""

    record: WriteKey
    key: str = field(repr=False)


def issue_key(
    tenant_id: str,
    kind: KeyKind,
    *,
    created_at: datetime,
    origins: tuple[str, ...] = (),
    label: str | None = None,
) -> IssuedKey:
    """A new random key of `kind` for `tenant_id`.

    Raises `ValueError` for a browser key without origins (it would be usable from nowhere),
    a server key with origins (a secret key has no business in a page), or a bad origin.
    """
    normalised = tuple(dict.fromkeys(normalise_origin(origin) for origin in origins))
    if kind == "browser" and not normalised:
        raise ValueError("a browser key needs at least one origin (--origin https://shop.example)")
    if kind == "server" and normalised:
        raise ValueError("origins bind browser keys only; a server key is a secret and must stay off web pages")
    if len(normalised) > MAX_ORIGINS_PER_KEY:
        raise ValueError(f"a key may have at most {MAX_ORIGINS_PER_KEY} origins")
    key_id = _random_base32(KEY_ID_LENGTH)
    key = KEY_PREFIXES[kind] + key_id + _random_base32(_SECRET_LENGTH)
    record = WriteKey(
        key_id=key_id,
        tenant_id=tenant_id,
        kind=kind,
        status="active",
        key_hash=hash_key(key),
        created_at=created_at,
        origins=normalised,
        label=label,
    )
    return IssuedKey(record, key)


_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _ascii_host(host: str, origin: str) -> str:
    if host.isascii():
        return host
    try:
        # Python's IDNA codec (RFC 3490): the same labels browsers put in `Origin` for
        # ordinary internationalised names.
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{origin!r} is not an origin: its host cannot be written in ASCII (IDNA)") from None


def normalise_origin(origin: str) -> str:
    """An origin as browsers send it in `Origin`: `scheme://host[:port]`, lower case, default port left out.

    An internationalised host (`bücher.example`) is kept in the ASCII (punycode) form browsers
    send (`xn--bcher-kva.example`). Raises `ValueError` for anything else (a path, a wildcard,
    `null`, user info, a host IDNA cannot encode).
    """
    text = origin.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])") from None
    if (
        parts.scheme.lower() not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or "*" in text
    ):
        raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], e.g. https://shop.example)")
    scheme = parts.scheme.lower()
    host = _ascii_host(parts.hostname.lower(), origin)
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    shown_port = "" if port is None or port == _DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{shown_port}"
