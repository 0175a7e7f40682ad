"""Drives a Cosmos DB-triggered function from the embedded event store's change feed, as one instance.

The feed is split into ranges (`EmbeddedEventStore.feed_ranges`) and each range has a lease
(`cloudscale_local.host.leases`), shared by every instance on the data folder. As the change
feed processor does inside the Functions host's Cosmos DB listener (sources in
`docs/architecture.md`, "Change-feed leases"):

- each start takes a fresh owner id (the listener's `Guid.NewGuid()`), so a restarted
  instance cannot reclaim its old leases by name: they come back once released or expired;
- every `leaseAcquireInterval` it reads all leases and takes what the equal-partitions
  strategy says (`cloudscale_local.host.lease_balancing`): free or expired leases first, else
  one stolen from the busiest instance;
- each owned lease runs its own loop (`cloudscale_local.host.lease_processor`), concurrently,
  in order within its range, renewing the lease as it goes; a lease found taken by another
  instance ends its loop;
- stopping lets each batch in flight finish, then releases the leases still owned, so
  another instance takes them at its next balancing instead of after their expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import uuid

from cloudscale_local.host.functions import ChangeFeedFunction
from cloudscale_local.host.lease_balancing import leases_to_take
from cloudscale_local.host.lease_processor import FeedStats, LeaseProcessor, to_documents
from cloudscale_local.host.leases import LeaseLostError, LeaseStore
from shared.adapters.event_store.embedded_event_store import EmbeddedEventStore
from shared.ports import PortError

__all__ = ["ChangeFeedTrigger", "FeedStats", "new_owner_id", "to_documents"]

logger = logging.getLogger(__name__)


def new_owner_id() -> str:
    """A fresh lease owner id; the host and process in it are for people reading the lease file."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


class ChangeFeedTrigger:
    """One function's change feed in this instance: the leases it owns, one loop each."""

    def __init__(
        self,
        function: ChangeFeedFunction,
        store: EmbeddedEventStore,
        leases: LeaseStore,
        function_timeout: float | None = None,
    ) -> None:
        """`function_timeout` is host.json's `functionTimeout` in seconds (None: no limit)."""
        self.function = function
        self.owner = new_owner_id()
        self.stats = FeedStats()
        self._function_timeout = function_timeout
        self._store = store
        self._leases = leases
        self._processors: dict[int, LeaseProcessor] = {}
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        store.on_change(self._wake)

    @property
    def owned_ranges(self) -> set[int]:
        """The feed ranges whose lease this trigger holds and processes."""
        return {number for number, processor in self._processors.items() if processor.running}

    def start(self) -> None:
        self._task = asyncio.create_task(self._balance_loop(), name=f"changefeed-balancer-{self.function.name}")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop every loop after its batch in flight (cut short after `grace_seconds`), then
        release the leases still owned."""
        self._stop_requested.set()
        if self._task is not None:
            _, pending = await asyncio.wait({self._task}, timeout=grace_seconds)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        processors = list(self._processors.values())
        await asyncio.gather(*(processor.stop(grace_seconds) for processor in processors))
        await asyncio.gather(*(self._release(processor) for processor in processors if not processor.lost))
        self._processors.clear()

    async def _release(self, processor: LeaseProcessor) -> None:
        try:
            await self._leases.release(processor.lease)
        except LeaseLostError:
            pass  # taken by another instance meanwhile: nothing to hand over
        except (sqlite3.Error, OSError):
            logger.exception("could not release the lease of %s range %d", self.function.name, processor.feed_range)

    def _wake(self) -> None:
        for processor in self._processors.values():
            processor.wake()

    async def _balance_loop(self) -> None:
        ranges: int | None = None
        while not self._stop_requested.is_set():
            try:
                if ranges is None:
                    count = await self._store.feed_ranges()
                    await self._leases.ensure(self.function.name, range(count))
                    ranges = count
                await self._balance(ranges)
            except (PortError, sqlite3.Error, OSError):
                logger.exception("balancing the change-feed leases of %s failed; trying again", self.function.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), timeout=self.function.timings.acquire_interval)

    async def _balance(self, ranges: int) -> None:
        """One cycle of the load balancer: read every lease, take what the strategy says."""
        for number in [number for number, processor in self._processors.items() if not processor.running]:
            del self._processors[number]  # its loop ended: the lease was lost
        leases = [lease for lease in await self._leases.read_all(self.function.name) if lease.feed_range < ranges]
        timings = self.function.timings
        for lease in leases_to_take(leases, self.owner, self._leases.now(), timings.expiration_interval):
            if self._stop_requested.is_set():
                return
            running = self._processors.get(lease.feed_range)
            try:
                if running is not None:
                    # Still processing, but not renewed in time (the lease file was unavailable):
                    # stamp it again rather than start a second loop on the range.
                    running.lease = await self._leases.renew(running.lease)
                    continue
                acquired = await self._leases.acquire(lease, self.owner)
            except LeaseLostError:
                logger.debug("%s: another instance took range %d first", self.function.name, lease.feed_range)
                continue
            self.stats.acquired += 1
            logger.info(
                "%s took the lease on range %d (from %s)", self.function.name, lease.feed_range, lease.owner or "nobody"
            )
            processor = LeaseProcessor(
                acquired, self.function, self._store, self._leases, self.stats, self._function_timeout
            )
            self._processors[lease.feed_range] = processor
            processor.start()
