"""The suppression list as every stage checks it: each tenant's tombstones, cached per worker.

The process stage (new events, redeliveries, dead-letter replays), the change feed and
reconciliation each ask `SuppressionList.drops` before they store or send an event, so an
erased subject's event is dropped wherever it comes from (`shared.domain.privacy`).

A tenant's tombstones are read once per `cache_seconds` (counted from the start of the read)
and shared by every event of that tenant meanwhile, so the check costs a dictionary lookup for
a tenant with no tombstones and one HMAC per identifier otherwise. **A tombstone written to the
store is seen by every instance within `cache_seconds`**: the bound an erasure's `settle` step
waits out before it deletes anything.

Fails closed: once the cached copy is older than `cache_seconds` and the store cannot be read,
`drops` raises `PrivacyStoreError`, and the stage retries as it does for any store that is
down, rather than let an erased subject's event through on old information.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from shared.domain.privacy import SuppressionSnapshot
from shared.domain.stored_event import StoredEvent
from shared.ports import PrivacyStore

__all__ = ["SuppressionCheck", "SuppressionList", "event_suppressed"]


class SuppressionCheck(Protocol):
    """What a stage needs of the suppression list: `SuppressionList`, or a test's stand-in."""

    async def drops(
        self, tenant_id: str, user_id: str | None, anonymous_id: str | None, received_at: datetime
    ) -> bool: ...


async def event_suppressed(check: SuppressionCheck, event: StoredEvent) -> bool:
    """Whether a stored (or about to be stored) event is an erased subject's: its identifiers, at
    the time ingest received it. Raises `PrivacyStoreError` when the list cannot be read."""
    return await check.drops(event.tenant_id, event.user_id, event.anonymous_id, event.enrichment.received_at)


class SuppressionList:
    """Cached tombstones per tenant, and the check the stages make."""

    def __init__(
        self,
        store: PrivacyStore,
        secret: Callable[[], Awaitable[bytes]],
        *,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`secret` is awaited on first use: the deployment's subject-hash key (`Container.subject_key_secret`)."""
        self._store = store
        self._read_secret = secret
        self._secret: bytes | None = None
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cached: dict[str, tuple[float, SuppressionSnapshot]] = {}
        self._loading: dict[str, asyncio.Lock] = {}

    async def secret(self) -> bytes:
        """The HMAC key subject hashes are made under (read once)."""
        if self._secret is None:
            self._secret = await self._read_secret()
        return self._secret

    async def snapshot(self, tenant_id: str) -> SuppressionSnapshot:
        """The tenant's tombstones, at most `cache_seconds` old. Raises `PrivacyStoreError`."""
        cached = self._fresh(tenant_id)
        if cached is not None:
            return cached
        lock = self._loading.setdefault(tenant_id, asyncio.Lock())
        async with lock:
            # Another task may have loaded it while this one waited for the lock.
            cached = self._fresh(tenant_id)
            if cached is not None:
                return cached
            started = self._clock()
            snapshot = SuppressionSnapshot.of(tenant_id, await self._store.suppressions(tenant_id))
            self._cached[tenant_id] = (started, snapshot)
            return snapshot

    async def drops(self, tenant_id: str, user_id: str | None, anonymous_id: str | None, received_at: datetime) -> bool:
        """Whether this event (its tenant, identifiers and ingest time) is an erased subject's."""
        if user_id is None and anonymous_id is None:
            return False
        snapshot = await self.snapshot(tenant_id)
        if not snapshot.by_hash:
            return False  # the common case: no tombstone in the tenant, no secret read, no hash made
        return snapshot.drops(await self.secret(), user_id, anonymous_id, received_at)

    def forget(self, tenant_id: str) -> None:
        """Drop the cached copy, so the next check reads the store (after this worker wrote a tombstone)."""
        self._cached.pop(tenant_id, None)

    def _fresh(self, tenant_id: str) -> SuppressionSnapshot | None:
        cached = self._cached.get(tenant_id)
        if cached is None or self._clock() - cached[0] >= self._cache_seconds:
            return None
        return cached[1]
