"""Who sent a request: a presented write key checked against the tenant registry.

Every stage that takes a key (ingest, the Segment-compatible API, reading an event back) asks
`WriteKeyAuthenticator.authenticate` and gets a `Producer` or a `KeyRejectedError` naming why.

Lookups are cached per instance for `cache_seconds`: a request costs a registry read only
when its key was not seen for that long, and **a key revoked or a tenant suspended in the
registry stops working within `cache_seconds`** on every instance (the bound the docs state;
`CLOUDSCALE_WRITE_KEY_CACHE_SECONDS`). Key ids that are not in the registry are cached too,
so a client repeating a bad key does not read the registry each time; they have their own,
smaller bound, so a flood of guessed keys (each a fresh random id: one registry read of a
missing row each) never evicts the keys in use. The secret
part is checked against the stored hash on every request, cached or not, in constant time.

Nothing here logs a key: at most its id, which is in the registry for operators to see.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from shared.domain.write_keys import KeyKind, Tenant, WriteKey, origin_allowed, parse_key
from shared.ports import PortError, TenantRegistry

__all__ = ["KeyRejectedError", "Producer", "RejectionReason", "WriteKeyAuthenticator"]

logger = logging.getLogger(__name__)

RejectionReason = Literal["missing_key", "invalid_key", "key_revoked", "tenant_suspended", "origin_not_allowed"]

_STATUS: Final[dict[RejectionReason, int]] = {
    "missing_key": 401,
    "invalid_key": 401,
    "key_revoked": 403,
    "tenant_suspended": 403,
    "origin_not_allowed": 403,
}


class KeyRejectedError(Exception):
    """The request's key does not admit it; `status` is 401 (no or unknown key) or 403 (known, not allowed)."""

    def __init__(self, reason: RejectionReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = _STATUS[reason]


@dataclass(frozen=True, slots=True)
class Producer:
    """The sender a key proves: its tenant, and what the key allows."""

    tenant_id: str
    key_id: str
    kind: KeyKind
    origins: tuple[str, ...]
    events_per_minute: int | None
    """The tenant's own quota of events a minute; None: the service's default."""

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a request carrying `Origin: origin` may use this key (see `WriteKey.allows_origin`)."""
        return origin_allowed(self.kind, self.origins, origin)


@dataclass(frozen=True, slots=True)
class _Entry:
    expires_at: float
    key: WriteKey | None
    tenant: Tenant | None


class WriteKeyAuthenticator:
    """Checks presented keys against the registry, with a per-instance cache of `cache_seconds`."""

    def __init__(
        self,
        registry: TenantRegistry,
        *,
        cache_seconds: float,
        max_entries: int = 10_000,
        max_unknown: int = 1_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._registry = registry
        self._cache_seconds = cache_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._wall_clock = wall_clock
        self._max_unknown = max_unknown
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        # Ids not in the registry, apart: guesses must not push known keys out of `_entries`.
        self._unknown: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, asyncio.Task[_Entry]] = {}
        self._touched_until: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()

    @property
    def cache_seconds(self) -> float:
        """How long a revocation or suspension may take to reach this instance."""
        return self._cache_seconds

    async def authenticate(self, presented: str | None) -> Producer:
        """The producer `presented` proves, or `KeyRejectedError`.

        Raises `PortError` when the registry cannot be read and the key is not cached: the
        caller answers 503, since the key may well be good.
        """
        if not presented:
            raise KeyRejectedError("missing_key", "a write key is required: send 'Authorization: Bearer <key>'")
        parsed = parse_key(presented)
        if parsed is None:
            raise KeyRejectedError("invalid_key", "the write key is not valid")
        entry = await self._entry(parsed.key_id)
        key = entry.key
        # Same answer for an unknown id and a wrong secret: neither tells a guesser anything.
        if key is None or key.kind != parsed.kind or not key.matches(presented):
            raise KeyRejectedError("invalid_key", "the write key is not valid")
        if not key.active:
            raise KeyRejectedError("key_revoked", f"write key {key.key_id} was revoked; use another key of the tenant")
        tenant = entry.tenant
        if tenant is None or not tenant.active:
            raise KeyRejectedError("tenant_suspended", f"tenant {key.tenant_id!r} is suspended")
        self._touch(key.key_id)
        return Producer(key.tenant_id, key.key_id, key.kind, key.origins, tenant.events_per_minute)

    async def close(self) -> None:
        """Wait for the last-used times being written."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _entry(self, key_id: str) -> _Entry:
        now = self._clock()
        for cache in (self._entries, self._unknown):
            cached = cache.get(key_id)
            if cached is not None and cached.expires_at > now:
                cache.move_to_end(key_id)
                return cached
        # Concurrent requests with the same key share one registry read.
        loading = self._loading.get(key_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key_id))
            self._loading[key_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(key_id, None))
        return await asyncio.shield(loading)

    async def _load(self, key_id: str) -> _Entry:
        # The bound counts from when the read started: a revocation committed while a slow read
        # was under way must still reach this instance within `cache_seconds` of it.
        started = self._clock()
        key = await self._registry.get_key(key_id)
        tenant = await self._registry.get_tenant(key.tenant_id) if key is not None else None
        entry = _Entry(started + self._cache_seconds, key, tenant)
        cache, limit = (self._entries, self._max_entries) if key is not None else (self._unknown, self._max_unknown)
        (self._unknown if key is not None else self._entries).pop(key_id, None)
        cache[key_id] = entry
        cache.move_to_end(key_id)
        while len(cache) > limit:
            cache.popitem(last=False)
        return entry

    def _touch(self, key_id: str) -> None:
        """Record the key's last use, at most once per cache period per instance, off the request's path."""
        now = self._clock()
        if self._touched_until.get(key_id, 0.0) > now:
            return
        self._touched_until[key_id] = now + max(self._cache_seconds, 60.0)
        if len(self._touched_until) > self._max_entries:
            self._touched_until = {k: v for k, v in self._touched_until.items() if v > now}
        task = asyncio.create_task(self._write_last_used(key_id, self._wall_clock()))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_last_used(self, key_id: str, at: datetime) -> None:
        try:
            await self._registry.touch_key(key_id, at)
        except PortError as exc:
            # A last-used time is for operators; a registry hiccup must not fail the request.
            logger.warning("could not record the last use of write key %s: %s", key_id, exc)
