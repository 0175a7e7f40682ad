"""One owned change-feed lease: its range's batches in order, its checkpoints and its renewal.

What the change feed processor runs for each lease it owns (its partition supervisor: a
feed processor and a lease renewer, each ending the other), and what the Functions host does
with a batch (sources in `docs/architecture.md`, "The Functions host's rules"):

- read the range's changes after the lease's checkpoint, in commit order, at most
  `maxItemsPerInvocation` at a time, and hand them to the function as a `func.DocumentList`
  of the stored documents (with `_ts`, the commit time, and `_lsn`, the sequence number, as
  Cosmos DB adds its system properties); with none, wait `feedPollDelay` (a save in this
  process wakes the loop at once);
- the function returned: checkpoint the lease past the batch, then go on;
- it raised (or ran past `functionTimeout`): run the function's `@retry` policy
  (`cloudscale_local.host.retries`); without a policy the batch is not retried at all;
- the retries are spent and it still fails: checkpoint past the batch anyway and go on, as
  the Cosmos DB extension does. The batch is skipped: an ERROR names its range, and
  reconciliation (`reconcile_analytics`, hourly, or `cloudscale reconcile`) re-sends what
  analytics is missing;
- the renewer stamps the lease after half the renew interval, then every renew interval.

A checkpoint or renewal that finds the lease owned by another instance ends the loop without
checkpointing (the new owner starts from the last checkpoint, so the batch in flight is
delivered again; the analytics store is idempotent on (`TenantId`, `EventId`)). Stopping lets
the batch in flight finish for a grace period; one cut short, or one that failed while
stopping, is not checkpointed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from dataclasses import dataclass, field

import azure.functions as func

from cloudscale_local.host.functions import ChangeFeedFunction
from cloudscale_local.host.invocation import change_feed_invocation
from cloudscale_local.host.leases import Lease, LeaseLostError, LeaseStore
from cloudscale_local.host.retries import Outcome, run_with_retries
from shared.adapters.event_store.embedded_event_store import ChangeFeedEntry, EmbeddedEventStore
from shared.ports import PortError

__all__ = ["FeedStats", "LeaseProcessor", "to_documents"]

logger = logging.getLogger(__name__)

_IO_ERRORS = (PortError, sqlite3.Error, OSError)


@dataclass(slots=True)
class FeedStats:
    """One trigger's counts, over every lease it held."""

    batches: int = 0
    """Invocations, retries included."""
    failures: int = 0
    skipped: int = 0
    """Batches the checkpoint moved past after they failed for good."""
    checkpoints: dict[int, int] = field(default_factory=dict)
    """The last checkpoint this trigger wrote, per feed range."""
    acquired: int = 0
    """Leases taken (free or stolen)."""
    lost: int = 0
    """Leases found owned by another instance while held."""


class LeaseProcessor:
    """The loop of one lease this instance owns."""

    def __init__(
        self,
        lease: Lease,
        function: ChangeFeedFunction,
        store: EmbeddedEventStore,
        leases: LeaseStore,
        stats: FeedStats,
        function_timeout: float | None = None,
    ) -> None:
        self.lease = lease
        self.lost = False
        self.function = function
        self._store = store
        self._leases = leases
        self._stats = stats
        self._function_timeout = function_timeout
        self._position = lease.checkpoint
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ahead: asyncio.Task[list[ChangeFeedEntry]] | None = None

    @property
    def feed_range(self) -> int:
        return self.lease.feed_range

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        name = f"changefeed-{self.function.name}-range-{self.feed_range}"
        self._task = asyncio.create_task(self._run(), name=name)

    def wake(self) -> None:
        """Look for changes now (a save in this process)."""
        self._wakeup.set()

    async def stop(self, grace_seconds: float) -> None:
        """Stop after the batch in flight (or cut it short after `grace_seconds`)."""
        self._stop_requested.set()
        self._wakeup.set()
        if self._task is None:
            return
        _, pending = await asyncio.wait({self._task}, timeout=grace_seconds)
        if pending:
            logger.warning("a change-feed batch was cut short at shutdown; it will be delivered again")
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        renewer = asyncio.create_task(self._renew())
        try:
            await self._process()
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self._drop_read_ahead()

    async def _process(self) -> None:
        poll = self.function.timings.feed_poll_delay
        while not self._stop_requested.is_set():
            self._wakeup.clear()
            try:
                if not await self._next_batch():
                    await self._sleep(poll)
            except LeaseLostError:
                self._lose("at its checkpoint")
            except Exception:
                # The feed or the lease file failed, or anything else did (a stored row that
                # cannot be read, say): nothing was checkpointed, so the batch comes again on
                # the next pass (read afresh from the checkpoint). The loop must not end
                # silently: its lease would be neither renewed nor released and the range stall.
                await self._drop_read_ahead()
                logger.exception(
                    "the change-feed loop of %s (range %d) failed; trying again in %s s",
                    self.function.name,
                    self.feed_range,
                    poll,
                )
                await self._sleep(poll)

    async def _renew(self) -> None:
        interval = self.function.timings.renew_interval
        await self._sleep_unless_stopped(interval / 2)
        while not self._stop_requested.is_set():
            try:
                self.lease = await self._leases.renew(self.lease)
            except LeaseLostError:
                self._lose("on renewal")
                return
            except _IO_ERRORS:
                # Not lost, only not renewed: the lease expires if this goes on.
                logger.exception("could not renew the lease of %s (range %d)", self.function.name, self.feed_range)
            await self._sleep_unless_stopped(interval)

    def _lose(self, where: str) -> None:
        if not self.lost:
            self.lost = True
            self._stats.lost += 1
            logger.info("%s lost its lease on range %d %s", self.function.name, self.feed_range, where)
        self._stop_requested.set()
        self._wakeup.set()

    async def _next_batch(self) -> bool:
        """Deliver the next batch and checkpoint it; False when there was nothing to deliver."""
        ahead, self._ahead = self._ahead, None
        changes = await ahead if ahead is not None else []
        if not changes:
            # Read afresh: an empty read-ahead may predate a save whose wake-up this pass cleared.
            changes = await self._read(self._position)
        if not changes:
            return False
        # Read the next batch while the function works on this one (reading is the store's
        # thread, the function is this loop's): under a backlog the feed then waits on
        # neither. The read-ahead starts after this batch, so it is used only once this
        # batch is checkpointed, and dropped otherwise.
        self._ahead = asyncio.create_task(self._read(changes[-1].sequence))
        outcome = await self._deliver(changes)
        if outcome is Outcome.STOPPED:
            await self._drop_read_ahead()
            return True
        if outcome is Outcome.FAILED:
            self._stats.skipped += 1
            logger.error(
                "function %s failed for good on changes %d-%d: the checkpoint moves past them, so they are"
                " skipped; reconciliation (reconcile_analytics, hourly, or `cloudscale reconcile`) will re-send them",
                self.function.name,
                changes[0].sequence,
                changes[-1].sequence,
            )
        self.lease = await self._leases.checkpoint(self.lease, changes[-1].sequence)
        self._position = changes[-1].sequence
        self._stats.checkpoints[self.feed_range] = self._position
        return True

    async def _read(self, after: int) -> list[ChangeFeedEntry]:
        return await self._store.changes(after=after, limit=self.function.max_items, feed_range=self.feed_range)

    async def _drop_read_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_IO_ERRORS):
                await ahead

    async def _deliver(self, changes: list[ChangeFeedEntry]) -> Outcome:
        """Run the function on one batch under its retry policy."""

        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            # A fresh DocumentList each time: the host binds the trigger data anew per invocation.
            self._stats.batches += 1
            with change_feed_invocation(
                self.function.name,
                retry_count=attempts,
                max_retry_count=self.function.retry.max_retry_count if self.function.retry else 0,
                documents=len(changes),
            ) as context:
                attempts += 1
                await self.function.invoke(to_documents(changes), context)

        result = await run_with_retries(
            attempt,
            self.function.retry,
            self._stop_requested,
            describe=f"function {self.function.name} on changes {changes[0].sequence}-{changes[-1].sequence}",
            logger=logger,
            function_timeout=self._function_timeout,
        )
        self._stats.failures += result.failures
        if result.outcome is Outcome.FAILED and self._stop_requested.is_set():
            # The host stopped (or the lease was lost) while this failed: like the extension's
            # cancellation check before the checkpoint, leave the batch for the next owner.
            return Outcome.STOPPED
        return result.outcome

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), timeout=seconds)


def to_documents(changes: list[ChangeFeedEntry]) -> func.DocumentList:
    """The batch as the Python worker hands it over: stored documents with their system properties."""
    return func.DocumentList(
        func.Document.from_dict({**change.document, "_ts": change.stored_at, "_lsn": change.sequence})
        for change in changes
    )
