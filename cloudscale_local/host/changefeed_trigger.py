"""Drives a Cosmos DB-triggered function from the embedded event store's change feed.

What the Functions host does with a change-feed lease, on one machine (sources in
`docs/architecture.md`, "The Functions host's rules"):

- read the changes after the lease's checkpoint, in commit order, at most
  `maxItemsPerInvocation` at a time, and hand them to the function as a `func.DocumentList`
  of the stored documents (with `_ts`, the commit time, and `_lsn`, the sequence number, as
  Cosmos DB adds its system properties);
- the function returned: advance the durable checkpoint past the batch, then go on;
- it raised (or ran past `functionTimeout`): run the function's `@retry` policy
  (`cloudscale_local.host.retries`: the host's backoff, up to `max_retry_count` retries); without a
  policy the batch is not retried at all;
- the retries are spent and it still fails: checkpoint past the batch anyway and go on, as
  the Cosmos DB extension does (its listener returns normally to the change feed processor,
  which then checkpoints). The batch is skipped: an ERROR names its range, and
  reconciliation (`reconcile_analytics`, hourly, or `cloudscale reconcile`) re-sends what
  analytics is missing.

Stopping lets the batch in flight finish for a grace period; one cut short, or one that
failed while stopping, is not checkpointed and is delivered again after a restart (the
analytics store is idempotent on (`TenantId`, `EventId`)).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from dataclasses import dataclass

import azure.functions as func

from cloudscale_local.host.functions import ChangeFeedFunction
from cloudscale_local.host.invocation import change_feed_invocation
from cloudscale_local.host.leases import LeaseStore
from cloudscale_local.host.retries import Outcome, run_with_retries
from shared.adapters.event_store.embedded_event_store import ChangeFeedEntry, EmbeddedEventStore
from shared.ports import PortError

__all__ = ["ChangeFeedTrigger", "FeedStats", "to_documents"]

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0
"""How often an idle loop looks for changes it was not told about (writes from other processes)."""


@dataclass(slots=True)
class FeedStats:
    batches: int = 0
    """Invocations, retries included."""
    failures: int = 0
    skipped: int = 0
    """Batches the checkpoint moved past after they failed for good."""
    checkpoint: int = 0


class ChangeFeedTrigger:
    """One change-feed loop: one function, one lease, batches in order."""

    def __init__(
        self,
        function: ChangeFeedFunction,
        store: EmbeddedEventStore,
        leases: LeaseStore,
        function_timeout: float | None = None,
    ) -> None:
        """`function_timeout` is host.json's `functionTimeout` in seconds (None: no limit)."""
        self.function = function
        self._function_timeout = function_timeout
        self.stats = FeedStats()
        self._store = store
        self._leases = leases
        self._wakeup = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._lease_read = False
        self._ahead: asyncio.Task[list[ChangeFeedEntry]] | None = None
        store.on_change(self._wakeup.set)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"changefeed-trigger-{self.function.name}")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop after the batch in flight (or cut it short after `grace_seconds`)."""
        self._stopping = True
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
        try:
            while not self._stopping:
                self._wakeup.clear()
                try:
                    if not await self._next_batch():
                        await self._sleep(IDLE_POLL_SECONDS)
                except (PortError, sqlite3.Error, OSError):
                    # The feed or the lease file failed: nothing was checkpointed, so the batch
                    # comes again on the next pass (read afresh from the checkpoint).
                    await self._drop_read_ahead()
                    logger.exception(
                        "the change-feed loop of %s failed; trying again in %s s", self.function.name, IDLE_POLL_SECONDS
                    )
                    await self._sleep(IDLE_POLL_SECONDS)
        finally:
            await self._drop_read_ahead()

    async def _next_batch(self) -> bool:
        """Deliver the next batch and checkpoint it; False when there was nothing to deliver."""
        if self._lease_read is False:
            self.stats.checkpoint = await self._leases.checkpoint(self.function.name)
            self._lease_read = True
        ahead, self._ahead = self._ahead, None
        changes = await ahead if ahead is not None else []
        if not changes:
            # Read afresh: an empty read-ahead may predate a save whose wake-up this pass cleared.
            changes = await self._read(self.stats.checkpoint)
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
            self.stats.skipped += 1
            logger.error(
                "function %s failed for good on changes %d-%d: the checkpoint moves past them, so they are"
                " skipped; reconciliation (reconcile_analytics, hourly, or `cloudscale reconcile`) will re-send them",
                self.function.name,
                changes[0].sequence,
                changes[-1].sequence,
            )
        await self._leases.advance(self.function.name, changes[-1].sequence)
        self.stats.checkpoint = changes[-1].sequence
        return True

    async def _read(self, after: int) -> list[ChangeFeedEntry]:
        return await self._store.changes(after=after, limit=self.function.max_items)

    async def _drop_read_ahead(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, PortError, sqlite3.Error, OSError):
                await ahead

    async def _deliver(self, changes: list[ChangeFeedEntry]) -> Outcome:
        """Run the function on one batch under its retry policy."""

        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            # A fresh DocumentList each time: the host binds the trigger data anew per invocation.
            self.stats.batches += 1
            with change_feed_invocation(
                self.function.name,
                retry_count=attempts,
                max_retry_count=self.function.retry.max_retry_count if self.function.retry else 0,
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
        self.stats.failures += result.failures
        if result.outcome is Outcome.FAILED and self._stopping:
            # The host stopped while this failed: like the extension's cancellation check
            # before the checkpoint, leave the batch for the next start.
            return Outcome.STOPPED
        return result.outcome

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)


def to_documents(changes: list[ChangeFeedEntry]) -> func.DocumentList:
    """The batch as the Python worker hands it over: stored documents with their system properties."""
    return func.DocumentList(
        func.Document.from_dict({**change.document, "_ts": change.stored_at, "_lsn": change.sequence})
        for change in changes
    )
