"""`RateLimitStore` on Azure Table Storage (also runs against the Azurite emulator).

One entity per client, each in a partition of its own (no hot partition), one per instance
for the global window, one for the readiness probe: see `table_entities` for the layout.

Client updates are optimistic: read the entity and its ETag, apply the change, write back only
if the ETag still matches, and re-read and retry on a lost race.

The client key is the keyed hash of the client, never its address. Tables have no time to
live, so clients idle longer than `client_idle_seconds` are deleted by a bounded clean-up
(at most `prune_rows` entities) that runs with the instance-window pruning, at most once per
`prune_interval_seconds` per instance.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableEntity, UpdateMode
from azure.data.tables.aio import TableClient

from shared.adapters.rate_limit.table_entities import (
    CLIENT_PREFIX,
    CLIENT_PREFIX_END,
    HEALTH_PARTITION,
    HEALTH_ROW,
    STATE_ROW,
    WINDOW_PARTITION,
    client_entity,
    client_partition,
    client_state,
    peer_window,
    window_entity,
)
from shared.adapters.tables import Table, table_client_from_settings
from shared.domain.ratelimit import ClientState, PeerWindow, SlotWindow
from shared.ports import ContentionError, RateLimitStoreError
from shared.settings import Settings

__all__ = ["TableRateLimitStore", "create_table_rate_limit_store"]

T = TypeVar("T")

logger = logging.getLogger(__name__)

_PRUNE_AFTER_SECONDS = 3600.0
"""Instance entities older than this are deleted (instances that scaled in long ago)."""


_Change = Callable[[ClientState | None], tuple[ClientState, Any]]


@dataclass
class _Pending:
    """One `update_client` call waiting for its change to be written."""

    change: _Change
    result: asyncio.Future[Any]


class TableRateLimitStore:
    """Rate-limit state in one Azure table, shared by every instance of the app."""

    def __init__(
        self,
        client: TableClient,
        *,
        max_attempts: int = 8,
        peer_retention_seconds: float = 60.0,
        prune_interval_seconds: float = 600.0,
        client_idle_seconds: float = 3600.0,
        prune_rows: int = 1000,
        first_prune_after_seconds: float | None = None,
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        """Wrap `client`; nothing connects until first use.

        `max_attempts`: optimistic-concurrency attempts per `update_client` before `ContentionError`.
        `peer_retention_seconds`: how old a peer's window may be and still be returned.
        `prune_interval_seconds`: at most one clean-up of long-gone instances per this interval.
        `client_idle_seconds`: clients untouched for this long are deleted at a clean-up.
        `prune_rows`: at most this many client entities deleted per clean-up.
        `credential`: closed together with the client, if given.
        """
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._table = Table(client, credential=credential)
        self._client = client
        self._max_attempts = max_attempts
        self._peer_retention = peer_retention_seconds
        self._prune_interval = prune_interval_seconds
        self._client_idle = client_idle_seconds
        self._prune_rows = prune_rows
        # Not at the first exchange, which the instance's first request waits for, and not at
        # the same moment on every instance: somewhere within the first interval.
        self._next_prune: float | None = None
        self._first_prune_after = first_prune_after_seconds
        self._queues: dict[str, list[_Pending]] = {}
        self._drains: set[asyncio.Task[None]] = set()

    async def update_client(self, client_key: str, change: Callable[[ClientState | None], tuple[ClientState, T]]) -> T:
        """Apply `change` to the client's stored state with ETag checks; see `RateLimitStore.update_client`.

        Calls for one client on this instance are coalesced: one task reads the entity, applies
        every queued change in arrival order and writes once. Letting them race each other for
        the ETag instead starved some callers into `ContentionError` under a burst from one IP.
        """
        partition = client_partition(client_key)
        pending = _Pending(change, asyncio.get_running_loop().create_future())
        queue = self._queues.get(partition)
        if queue is None:
            queue = self._queues[partition] = [pending]
            drain = asyncio.create_task(self._drain(partition, queue))
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        else:
            queue.append(pending)
        return cast(T, await pending.result)

    async def exchange_window(
        self,
        instance_id: str,
        window: SlotWindow,
        now: float,
        reserve: Callable[[Sequence[PeerWindow]], int],
    ) -> Sequence[PeerWindow]:
        """Read every record exchanged in the retention period, then write this instance's.

        Read before write, so the reservation is claimed from what the others hold; two
        instances exchanging at once both read before either writes, which `share_quota`'s
        even split keeps within the limit.
        """
        async with self._guard():
            peers = [peer_window(entity) async for entity in self._windows_since(now - self._peer_retention)]
            await self._client.upsert_entity(
                window_entity(instance_id, window, now, reserve(peers)), mode=UpdateMode.REPLACE
            )
        if self._next_prune is None:
            delay = self._first_prune_after
            if delay is None:
                delay = random.uniform(0.1, 1.0) * self._prune_interval
            self._next_prune = now + delay
        if now >= self._next_prune:
            self._next_prune = now + self._prune_interval
            await self._prune_windows(before=now - _PRUNE_AFTER_SECONDS)
            await self._prune_clients(before=now - self._client_idle)
        return peers

    async def check(self) -> None:
        """Write one entity (partition ``health``, replaced each time); raise `RateLimitStoreError` if it fails.

        Every ingest request writes this table, so a read alone would pass while requests fail
        (a write right withdrawn, a throttled or read-only account). The entity is one fixed
        row in a partition of its own, read by nothing else.
        """
        async with self._guard():
            await self._client.upsert_entity(
                {"PartitionKey": HEALTH_PARTITION, "RowKey": HEALTH_ROW, "writtenAt": time.time()},
                mode=UpdateMode.REPLACE,
            )

    async def close(self) -> None:
        """Cancel updates still in flight, then close the table client and the credential, if owned."""
        for drain in self._drains:
            drain.cancel()
        await asyncio.gather(*self._drains, return_exceptions=True)
        await self._table.close()

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Create the table on first use and turn SDK and transport errors into `RateLimitStoreError`."""
        async with self._table.guarded(RateLimitStoreError, "rate-limit"):
            yield

    async def _drain(self, partition: str, queue: list[_Pending]) -> None:
        """Write the queued changes for one client, a batch per round trip, until none are left."""
        batch: list[_Pending] = []
        try:
            while queue:
                # A caller that gave up (cancelled) before its turn takes no token.
                batch = [pending for pending in queue if not pending.result.done()]
                queue.clear()
                if not batch:
                    continue
                try:
                    results = await self._apply(partition, [pending.change for pending in batch])
                except Exception as exc:
                    for pending in batch:
                        if not pending.result.done():
                            pending.result.set_exception(exc)
                else:
                    for pending, result in zip(batch, results, strict=True):
                        if not pending.result.done():
                            pending.result.set_result(result)
        finally:
            del self._queues[partition]
            for pending in [*batch, *queue]:  # Only left undone when this task was cancelled.
                pending.result.cancel()

    async def _apply(self, partition: str, changes: Sequence[_Change]) -> list[Any]:
        """Read, apply `changes` in order, write if unchanged; re-read and retry on a lost race."""
        async with self._guard():
            for attempt in range(self._max_attempts):
                if attempt:
                    await _backoff(attempt)
                entity = await self._read_client(partition)
                state = client_state(entity) if entity is not None else None
                results = []
                for change in changes:
                    state, result = change(state)
                    results.append(result)
                # `state` is only None if `changes` is empty, which `_drain` never passes.
                if state is not None and await self._write_client(partition, state, entity):
                    return results
        raise ContentionError(f"client state kept changing underneath us ({self._max_attempts} attempts)")

    async def _read_client(self, partition: str) -> TableEntity | None:
        return await self._table.get(partition, STATE_ROW)

    async def _write_client(self, partition: str, state: ClientState, current: TableEntity | None) -> bool:
        """Write `state` if the entity is still `current`; False when another writer got there first."""
        entity = client_entity(partition, state)
        try:
            if current is None:
                await self._client.create_entity(entity)
            else:
                await self._client.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceModifiedError, ResourceExistsError):  # 412 / 409: lost the race.
            return False
        return True

    def _windows_since(self, cutoff: float) -> AsyncIterator[TableEntity]:
        return self._client.query_entities(
            "PartitionKey eq @pk and exchangedAt ge @cutoff",
            parameters={"pk": WINDOW_PARTITION, "cutoff": float(cutoff)},
        )

    async def _prune_windows(self, before: float) -> None:
        """Delete long-stale instance entities. Best effort: a failure here must not fail the exchange."""
        try:
            stale = self._client.query_entities(
                "PartitionKey eq @pk and exchangedAt lt @before",
                parameters={"pk": WINDOW_PARTITION, "before": float(before)},
                select=["PartitionKey", "RowKey"],
            )
            async for entity in stale:
                # The ETag check spares an instance that came back and wrote since we read.
                with suppress(ResourceModifiedError):
                    await self._client.delete_entity(entity, match_condition=MatchConditions.IfNotModified)
        except AzureError:
            logger.warning("Pruning stale instance windows failed; will try again later", exc_info=True)

    async def _prune_clients(self, before: float) -> None:
        """Delete client entities idle since `before`, at most `prune_rows`. Best effort, like `_prune_windows`.

        A scan over the client partitions (every client has its own): bounded by `prune_rows`
        per clean-up, and a client that wrote since the read keeps its entity (ETag check).
        """
        try:
            idle = self._client.query_entities(
                "PartitionKey ge @first and PartitionKey lt @last and updatedAt lt @before",
                parameters={"first": CLIENT_PREFIX, "last": CLIENT_PREFIX_END, "before": float(before)},
                select=["PartitionKey", "RowKey"],
                results_per_page=min(self._prune_rows, 1000),
            )
            deleted = 0
            async for entity in idle:
                if deleted >= self._prune_rows:
                    break
                with suppress(ResourceModifiedError, ResourceNotFoundError):
                    await self._client.delete_entity(entity, match_condition=MatchConditions.IfNotModified)
                deleted += 1
        except AzureError:
            logger.warning("Pruning idle clients failed; will try again later", exc_info=True)


def create_table_rate_limit_store(settings: Settings) -> TableRateLimitStore:
    """Build the store from settings: the identity-based endpoint if set, else the connection string."""
    client, credential = table_client_from_settings(settings, settings.rate_limit_table)
    return TableRateLimitStore(
        client, credential=credential, client_idle_seconds=settings.rate_limit_client_idle_seconds
    )


async def _backoff(attempt: int) -> None:
    """Full jitter, so writers that just collided do not collide again in lockstep."""
    ceiling = min(0.5, 0.01 * 2**attempt)
    await asyncio.sleep(random.uniform(0, ceiling))
