"""A runner's lease on an erasure record: who may run it now, renewed while it runs.

The lease is two fields of the record (`lease_owner`, `lease_until`) written with
`PrivacyStore.replace_erasure`, whose revision check makes every write a compare-and-set: a
runner that lost the record to another finds out at its next write (`ErasureConflictError`)
and stops (`ErasureBusyError`). Every save renews the lease, and a heartbeat renews it every
third of its length while a long step runs (a settle wait, a large delete), so a live runner
never loses it; a dead one's expires and the next runner takes the record over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta

from privacy.errors import ErasureBusyError
from shared.domain.privacy import ErasureRequest
from shared.ports import ErasureConflictError, PortError, PrivacyStore

__all__ = ["ErasureLease", "held_by_another", "hold_lease"]

logger = logging.getLogger(__name__)


def held_by_another(record: ErasureRequest, owner: str, now: datetime) -> bool:
    """Whether a runner other than `owner` holds a lease on the record that has not expired at `now`."""
    return (
        record.lease_owner is not None
        and record.lease_owner != owner
        and record.lease_until is not None
        and record.lease_until > now
    )


@contextlib.asynccontextmanager
async def hold_lease(
    store: PrivacyStore,
    record: ErasureRequest,
    owner: str,
    lease_seconds: float,
    clock: Callable[[], datetime],
) -> AsyncIterator[ErasureLease]:
    """Take the lease on `record` (status `running`) and keep it renewed until the block ends.

    `ErasureBusyError` if another runner holds it. A failure in the block gives the lease back,
    so the next runner goes on at once; a runner that dies outright leaves it to expire.
    """
    if held_by_another(record, owner, clock()):
        until = record.lease_until.isoformat() if record.lease_until else "?"
        raise ErasureBusyError(f"erasure {record.id} is being run by {record.lease_owner} until {until}")
    lease = ErasureLease(store, record, owner, lease_seconds, clock)
    await lease.save(replace(record, status="running"))
    heartbeat = asyncio.create_task(lease.keep_alive())
    try:
        yield lease
    except Exception:
        heartbeat.cancel()
        await lease.give_back()
        raise
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat


class ErasureLease:
    """One runner's hold on one erasure record; `record` is the record as last saved."""

    def __init__(
        self,
        store: PrivacyStore,
        record: ErasureRequest,
        owner: str,
        lease_seconds: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self.record = record
        self._owner = owner
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._saving = asyncio.Lock()

    async def save(self, record: ErasureRequest, *, renew: bool = True) -> None:
        """Store `record` (with the lease renewed unless told not to); `ErasureBusyError` if it was taken over."""
        async with self._saving:
            await self._save(record, renew=renew)

    async def _save(self, record: ErasureRequest, *, renew: bool) -> None:
        if renew:
            until = self._clock() + timedelta(seconds=self._lease_seconds)
            record = replace(record, lease_owner=self._owner, lease_until=until)
        # The heartbeat may have saved since `record` was built from ours: same record, newer revision.
        record = replace(record, revision=self.record.revision)
        try:
            self.record = await self._store.replace_erasure(record)
        except ErasureConflictError:
            fresh = await self._store.get_erasure(record.id)
            owner = fresh.lease_owner if fresh is not None else None
            raise ErasureBusyError(f"erasure {record.id} was taken over by {owner or 'another runner'}") from None

    async def keep_alive(self) -> None:
        """Renew the lease every third of its length until cancelled (a failed renewal is retried then)."""
        while True:
            await asyncio.sleep(self._lease_seconds / 3)
            try:
                async with self._saving:
                    # Read under the lock: a step's result saved meanwhile must not be overwritten.
                    if self.record.status != "finished":
                        await self._save(self.record, renew=True)
            except (PortError, ErasureBusyError) as exc:
                logger.warning("the lease on erasure %s could not be renewed: %s", self.record.id, exc)

    async def give_back(self) -> None:
        """Release the lease after a failure, so the next runner goes on at once (best effort)."""
        with contextlib.suppress(PortError, ErasureBusyError):
            await self.save(replace(self.record, lease_owner=None, lease_until=None), renew=False)
