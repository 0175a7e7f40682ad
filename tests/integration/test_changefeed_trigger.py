"""The local host's change-feed loop over a real embedded event store and lease file.

These tests use a store with one feed range (as a small Cosmos DB container has one physical
partition): one lease, so the whole feed is one ordered sequence. The lease partitions, with
several ranges and several instances, are tested in test_changefeed_leases.py.

The function bodies are small async functions written here: one records the batches it is
given (and fails on purpose when told to), one writes them to a real embedded analytics
store, as `events_to_analytics` does.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from changefeed.service import AnalyticsFeedService
from cloudscale_local.host.changefeed_trigger import ChangeFeedTrigger
from cloudscale_local.host.feed_timings import FeedTimings
from cloudscale_local.host.functions import ChangeFeedFunction, RetryPolicy
from cloudscale_local.host.leases import LeaseStore
from shared.adapters.analytics.embedded_analytics import EmbeddedAnalyticsStore
from shared.adapters.event_store.embedded_event_store import EmbeddedEventStore
from shared.domain.stored_event import StoredEvent
from shared.telemetry import AnalyticsMetrics
from tests.waiting import wait_until

NAME = "events_to_analytics"
TINY_RETRY = RetryPolicy(
    strategy="exponential_backoff", max_retry_count=-1, minimum_interval=0.02, maximum_interval=0.1
)
"""Retries without end (`max_retry_count` -1, as a policy may say): a failing batch is never given up."""
TWO_RETRIES = RetryPolicy(strategy="exponential_backoff", max_retry_count=2, minimum_interval=0.05, maximum_interval=1)
"""The app's kind of policy (`events_to_analytics`: 12 retries, 1 s to 5 min), small enough for a test."""

IDLE_POLL_SECONDS = 1.0
"""The functions' `feedPollDelay`: how often an idle loop looks for changes it was not told about."""
TIMINGS = FeedTimings(
    acquire_interval=0.05, expiration_interval=5.0, renew_interval=0.5, feed_poll_delay=IDLE_POLL_SECONDS
)

Handler = Callable[[func.DocumentList], Awaitable[None]]
OpenLeases = Callable[[], LeaseStore]
Start = Callable[[ChangeFeedFunction, LeaseStore], ChangeFeedTrigger]


def stored_event(n: int) -> StoredEvent:
    event_id = str(uuid.UUID(int=n))
    return StoredEvent.from_document(
        {
            "id": event_id,
            "eventId": event_id,
            "tenantId": "acme" if n % 2 else "globex",
            "eventType": "page_view",
            "timestamp": "2026-03-01T12:00:00+00:00",
            "url": f"/page/{n}",
            "enrichment": {
                "clientNetwork": "198.51.100.0/24",
                "receivedAt": "2026-03-01T12:00:00+00:00",
                "processedAt": "2026-03-01T12:00:01+00:00",
                "queueLatencyMs": 1000.0,
            },
            "fraud": {"score": 0.0, "suspicious": False},
        }
    )


class StepClock:
    """The event store's clock: every commit one and a half seconds after the last."""

    def __init__(self, now: float = 1_772_366_400.25) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 1.5
        return self.now


@dataclass(frozen=True, slots=True)
class Delivery:
    at: float
    """`time.monotonic()` when the function was called."""
    documents: list[dict[str, Any]]
    checkpoint: int | None
    """The lease's checkpoint at the time of the call (when the recorder was given the lease store)."""
    succeeded: bool

    @property
    def sequences(self) -> list[int]:
        return [int(document["_lsn"]) for document in self.documents]


class Recorder:
    """A function body that records every batch; attempt number n fails while `fail(n)` is true."""

    def __init__(self, leases: LeaseStore | None = None, fail: Callable[[int], bool] = lambda attempt: False) -> None:
        self.deliveries: list[Delivery] = []
        self.argument_types: set[type] = set()
        self._leases = leases
        self._fail = fail

    async def handle(self, documents: func.DocumentList) -> None:
        self.argument_types.add(type(documents))
        self.argument_types.update(type(document) for document in documents)
        checkpoint = await checkpoint_of(self._leases) if self._leases else None
        failing = self._fail(len(self.deliveries) + 1)
        self.deliveries.append(
            Delivery(time.monotonic(), [document.to_dict() for document in documents], checkpoint, not failing)
        )
        if failing:
            raise RuntimeError("analytics is down (on purpose)")

    @property
    def succeeded(self) -> list[list[int]]:
        """The sequence numbers of each batch that succeeded, in order."""
        return [delivery.sequences for delivery in self.deliveries if delivery.succeeded]

    @property
    def failures(self) -> int:
        return sum(not delivery.succeeded for delivery in self.deliveries)

    def delivered_documents(self) -> int:
        return sum(len(batch) for batch in self.succeeded)


def function_for(
    handler: Handler, *, max_items: int = 100, retry: RetryPolicy | None = TINY_RETRY
) -> ChangeFeedFunction:
    return ChangeFeedFunction(
        name=NAME,
        database="cloudscale",
        container="%CLOUDSCALE_COSMOS_CONTAINER%",
        max_items=max_items,
        retry=retry,
        handler=handler,
        argument="documents",
        timings=TIMINGS,
    )


async def checkpoint_of(leases: LeaseStore) -> int:
    """The checkpoint of the store's one range (0 before the trigger created its lease)."""
    return (await leases.checkpoints(NAME)).get(0, 0)


@pytest.fixture
def events_path(tmp_path: Path) -> Path:
    return tmp_path / "events.sqlite3"


@pytest.fixture
def leases_path(tmp_path: Path) -> Path:
    return tmp_path / "leases.sqlite3"


@pytest.fixture
async def store(events_path: Path) -> AsyncIterator[EmbeddedEventStore]:
    opened = EmbeddedEventStore(events_path, clock=StepClock(), feed_ranges=1)
    yield opened
    await opened.close()


@pytest.fixture
def open_leases(leases_path: Path) -> Iterator[OpenLeases]:
    """Opens lease stores on the same file (as successive host processes would); closes them at the end."""
    opened: list[LeaseStore] = []

    def open_one() -> LeaseStore:
        opened.append(LeaseStore(leases_path))
        return opened[-1]

    yield open_one
    for leases in opened:
        leases.close()


@pytest.fixture
async def start(store: EmbeddedEventStore, open_leases: OpenLeases) -> AsyncIterator[Start]:
    """Starts triggers on the store; any still running at the end is stopped before the files close."""
    started: list[ChangeFeedTrigger] = []

    def run(function: ChangeFeedFunction, leases: LeaseStore) -> ChangeFeedTrigger:
        trigger = ChangeFeedTrigger(function, store, leases)
        trigger.start()
        started.append(trigger)
        return trigger

    yield run
    for trigger in started:
        await trigger.stop(grace_seconds=0.1)


async def save(store: EmbeddedEventStore, numbers: range) -> list[int]:
    """Save events `numbers`; their sequence numbers."""
    for n in numbers:
        assert await store.save(stored_event(n)) is True
    changes = await store.changes(0, 10_000)
    by_id = {change.event.event_id: change.sequence for change in changes}
    return [by_id[stored_event(n).event_id] for n in numbers]


async def test_batches_arrive_in_sequence_order_with_at_most_max_items(
    store: EmbeddedEventStore, open_leases: OpenLeases, start: Start
) -> None:
    # GIVEN seven stored events
    events = [stored_event(n) for n in range(1, 8)]
    await save(store, range(1, 8))
    changes = await store.changes(0, 100)
    leases = open_leases()

    # WHEN a trigger with maxItemsPerInvocation=3 runs until all of them are delivered
    recorder = Recorder()
    trigger = start(function_for(recorder.handle, max_items=3), leases)
    await wait_until(lambda: recorder.delivered_documents() == 7)
    await trigger.stop()

    # THEN they came in feed order, three at most per call, as a DocumentList of Documents
    assert [len(batch) for batch in recorder.succeeded] == [3, 3, 1]
    assert recorder.argument_types == {func.DocumentList, func.Document}
    documents = [document for delivery in recorder.deliveries for document in delivery.documents]
    # AND each document is the stored one, with its commit time and sequence number
    assert [document["_lsn"] for document in documents] == [change.sequence for change in changes]
    assert [document["_ts"] for document in documents] == [change.stored_at for change in changes]
    assert [StoredEvent.from_document(document) for document in documents] == events
    # AND the checkpoint is past the last batch, in memory and in the lease file
    assert trigger.stats.checkpoints[0] == changes[-1].sequence
    assert await checkpoint_of(leases) == changes[-1].sequence
    assert (trigger.stats.batches, trigger.stats.failures) == (3, 0)


async def test_a_new_save_wakes_the_idle_loop_at_once(
    store: EmbeddedEventStore, open_leases: OpenLeases, start: Start
) -> None:
    # GIVEN a trigger that delivered everything there was and is now idle
    recorder = Recorder()
    start(function_for(recorder.handle), open_leases())
    await save(store, range(1, 2))
    await wait_until(lambda: recorder.delivered_documents() == 1)
    await asyncio.sleep(IDLE_POLL_SECONDS / 5)  # well into its idle wait

    # WHEN an event is saved in this process
    saved = time.monotonic()
    await save(store, range(2, 3))
    await wait_until(lambda: recorder.delivered_documents() == 2)

    # THEN it is delivered without waiting for the next idle poll
    assert recorder.deliveries[-1].at - saved < IDLE_POLL_SECONDS / 2


async def test_a_save_by_another_process_is_found_by_the_idle_poll(
    store: EmbeddedEventStore, events_path: Path, open_leases: OpenLeases, start: Start
) -> None:
    # GIVEN an idle trigger
    recorder = Recorder()
    start(function_for(recorder.handle), open_leases())
    await save(store, range(1, 2))
    await wait_until(lambda: recorder.delivered_documents() == 1)

    # WHEN another store on the same file (another process: no wake-up call) saves an event
    other = EmbeddedEventStore(events_path, feed_ranges=1)
    try:
        assert await other.save(stored_event(2)) is True
    finally:
        await other.close()

    # THEN the next poll finds it
    await wait_until(lambda: recorder.delivered_documents() == 2, within=IDLE_POLL_SECONDS + 2)
    assert [delivery.sequences for delivery in recorder.deliveries][-1] == [await store.last_sequence()]


async def test_a_failing_function_is_retried_with_backoff_and_the_checkpoint_waits_for_success(
    store: EmbeddedEventStore, open_leases: OpenLeases, start: Start
) -> None:
    # GIVEN a function with two retries 0.05 s apart (then about 0.1 s) that fails twice on its
    # first batch
    leases = open_leases()
    recorder = Recorder(leases, fail=lambda attempt: attempt <= 2)
    first_batch = await save(store, range(1, 3))

    # WHEN it runs, and another event is stored while the batch is being retried
    trigger = start(function_for(recorder.handle, retry=TWO_RETRIES), leases)
    await wait_until(lambda: recorder.failures == 1)
    later = await save(store, range(3, 4))
    await wait_until(lambda: recorder.delivered_documents() == 3)
    await trigger.stop()

    # THEN the same batch was retried until it succeeded, and only then did the next one come
    assert [delivery.sequences for delivery in recorder.deliveries] == [first_batch] * 3 + [later]
    assert [delivery.succeeded for delivery in recorder.deliveries] == [False, False, True, True]
    # AND each retry waited as the host's backoff says: 0.05 s, then 0.05 s + 0.8-1.2 x 0.05 s
    first_gap, second_gap = (b.at - a.at for a, b in itertools.pairwise(recorder.deliveries[:3]))
    assert 0.045 <= first_gap < 0.09, first_gap
    assert 0.085 <= second_gap < 0.2, second_gap
    # AND the checkpoint did not move until the batch succeeded
    assert [delivery.checkpoint for delivery in recorder.deliveries] == [0, 0, 0, first_batch[-1]]
    assert await checkpoint_of(leases) == later[-1]
    assert (trigger.stats.batches, trigger.stats.failures, trigger.stats.skipped) == (4, 2, 0)


async def test_a_batch_that_still_fails_after_its_retries_is_skipped_and_the_feed_goes_on(
    store: EmbeddedEventStore, open_leases: OpenLeases, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN two batches of two events, and a function with two retries that fails on every
    # attempt at the first batch
    leases = open_leases()
    sequences = await save(store, range(1, 5))
    first_batch, later = sequences[:2], sequences[2:]
    recorder = Recorder(leases, fail=lambda attempt: attempt <= 3)

    # WHEN it runs
    trigger = start(function_for(recorder.handle, max_items=2, retry=TWO_RETRIES), leases)
    await wait_until(lambda: recorder.delivered_documents() == 2)
    await trigger.stop()

    # THEN the batch was tried once and retried twice, then the checkpoint moved past it
    # (as the Functions host does), and the next batch came
    assert [delivery.sequences for delivery in recorder.deliveries] == [first_batch] * 3 + [later]
    assert [delivery.checkpoint for delivery in recorder.deliveries] == [0, 0, 0, first_batch[-1]]
    assert await checkpoint_of(leases) == later[-1]
    assert (trigger.stats.batches, trigger.stats.failures, trigger.stats.skipped) == (4, 3, 1)
    # AND an ERROR names the skipped range and says reconciliation re-sends it
    [skipped] = [record for record in caplog.records if "skipped" in record.getMessage()]
    assert skipped.levelname == "ERROR"
    assert f"changes {first_batch[0]}-{first_batch[-1]}" in skipped.getMessage()
    assert "reconcil" in skipped.getMessage()


async def test_without_a_retry_policy_a_failed_batch_is_not_retried(
    store: EmbeddedEventStore, open_leases: OpenLeases, start: Start
) -> None:
    # GIVEN two batches, and a function with no retry policy that fails once, on the first
    leases = open_leases()
    sequences = await save(store, range(1, 4))
    first_batch, later = sequences[:2], sequences[2:]
    recorder = Recorder(leases, fail=lambda attempt: attempt == 1)

    # WHEN it runs
    trigger = start(function_for(recorder.handle, max_items=2, retry=None), leases)
    await wait_until(lambda: recorder.delivered_documents() == 1)
    await trigger.stop()

    # THEN the failed batch was delivered once and skipped: the host retries a Cosmos DB
    # trigger only under a retry policy
    assert [delivery.sequences for delivery in recorder.deliveries] == [first_batch, later]
    assert await checkpoint_of(leases) == later[-1]
    assert trigger.stats.skipped == 1


async def test_a_batch_past_function_timeout_fails_like_one_that_raised(
    store: EmbeddedEventStore, open_leases: OpenLeases
) -> None:
    # GIVEN two batches, a function with no retry policy that hangs on the first, and a
    # functionTimeout of 0.1 s
    leases = open_leases()
    sequences = await save(store, range(1, 4))
    deliveries: list[list[int]] = []
    never = asyncio.Event()

    async def hang_on_first(documents: func.DocumentList) -> None:
        deliveries.append([int(document["_lsn"]) for document in documents])
        if len(deliveries) == 1:
            await never.wait()

    # WHEN it runs
    trigger = ChangeFeedTrigger(function_for(hang_on_first, max_items=2, retry=None), store, leases, 0.1)
    trigger.start()
    try:
        await wait_until(lambda: len(deliveries) == 2)
    finally:
        await trigger.stop(grace_seconds=0.1)

    # THEN the hung batch was cut short, counted as failed and skipped, and the feed went on
    assert deliveries == [sequences[:2], sequences[2:]]
    assert (trigger.stats.failures, trigger.stats.skipped) == (1, 1)
    assert await checkpoint_of(leases) == sequences[-1]


async def test_the_checkpoint_is_durable_and_a_new_trigger_resumes_after_the_last_successful_batch(
    store: EmbeddedEventStore, open_leases: OpenLeases, start: Start
) -> None:
    # GIVEN six events and a first host whose function succeeds on two batches of two, then
    # keeps failing on the third
    sequences = await save(store, range(1, 7))
    first_leases = open_leases()
    first = Recorder(fail=lambda attempt: attempt > 2)
    first_trigger = start(function_for(first.handle, max_items=2), first_leases)
    await wait_until(lambda: first.failures >= 2)

    # WHEN that host stops, more events are stored, and a new host opens the lease file again
    await first_trigger.stop(grace_seconds=1)
    first_leases.close()
    sequences += await save(store, range(7, 9))
    second_leases = open_leases()
    assert await checkpoint_of(second_leases) == sequences[3]
    second = Recorder()
    second_trigger = start(function_for(second.handle, max_items=2), second_leases)
    await wait_until(lambda: second.delivered_documents() == 4)
    await second_trigger.stop()

    # THEN it resumed with the batch that had failed: no gap, no repeat
    assert first.succeeded == [sequences[0:2], sequences[2:4]]
    assert second.succeeded == [sequences[4:6], sequences[6:8]]
    assert [n for batch in first.succeeded + second.succeeded for n in batch] == sequences
    assert await checkpoint_of(second_leases) == sequences[-1]


def analytics_rows_per_event(path: Path) -> dict[str, int]:
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return dict(connection.execute("SELECT EventId, count(*) FROM events GROUP BY EventId").fetchall())
    finally:
        connection.close()


async def test_a_batch_cut_short_after_its_insert_is_delivered_again_and_stays_once_in_analytics(
    store: EmbeddedEventStore, tmp_path: Path, open_leases: OpenLeases, start: Start
) -> None:
    analytics_path = tmp_path / "analytics.sqlite3"
    analytics = EmbeddedAnalyticsStore(analytics_path)
    service = AnalyticsFeedService(
        analytics, AnalyticsMetrics(MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("test"))
    )
    sequences = await save(store, range(1, 4))
    deliveries: list[list[int]] = []
    written = asyncio.Event()
    never = asyncio.Event()

    async def write_then_hang(documents: func.DocumentList) -> None:
        deliveries.append([int(document["_lsn"]) for document in documents])
        await service.handle([document.to_dict() for document in documents])
        written.set()
        await never.wait()  # the host stops before the function returns

    async def write(documents: func.DocumentList) -> None:
        deliveries.append([int(document["_lsn"]) for document in documents])
        await service.handle([document.to_dict() for document in documents])

    try:
        # GIVEN a host stopped after the rows were inserted but before the checkpoint was written
        leases = open_leases()
        trigger = start(function_for(write_then_hang), leases)
        await asyncio.wait_for(written.wait(), timeout=5)
        stopping = time.monotonic()
        await trigger.stop(grace_seconds=0.1)
        assert time.monotonic() - stopping < 2
        assert await checkpoint_of(leases) == 0
        leases.close()
        ids = {stored_event(n).event_id for n in range(1, 4)}
        assert analytics_rows_per_event(analytics_path) == dict.fromkeys(ids, 1)

        # WHEN the host starts again
        again = open_leases()
        restarted = start(function_for(write), again)
        await wait_until(lambda: len(deliveries) == 2)
        await restarted.stop()

        # THEN the batch was delivered again, and analytics still has each row once
        assert deliveries == [sequences, sequences]
        assert await checkpoint_of(again) == sequences[-1]
        assert analytics_rows_per_event(analytics_path) == dict.fromkeys(ids, 1)
    finally:
        await analytics.close()


@pytest.mark.parametrize(
    "long_retry",
    [
        RetryPolicy(strategy="exponential_backoff", max_retry_count=-1, minimum_interval=30, maximum_interval=60),
        RetryPolicy(strategy="fixed_delay", max_retry_count=5, delay_interval=30),
    ],
    ids=["exponential_backoff", "fixed_delay"],
)
async def test_stop_returns_promptly_while_a_retry_wait_is_in_progress(
    store: EmbeddedEventStore, open_leases: OpenLeases, start: Start, long_retry: RetryPolicy
) -> None:
    # GIVEN a function that failed and now waits 30 s before its retry
    leases = open_leases()
    recorder = Recorder(fail=lambda attempt: True)
    trigger = start(function_for(recorder.handle, retry=long_retry), leases)
    await save(store, range(1, 2))
    await wait_until(lambda: recorder.failures == 1)

    # WHEN the host stops, with a generous grace period
    stopping = time.monotonic()
    await trigger.stop(grace_seconds=10)

    # THEN it stopped at once, without another attempt and without moving the checkpoint
    assert time.monotonic() - stopping < 1
    assert len(recorder.deliveries) == 1
    assert await checkpoint_of(leases) == 0


async def test_stop_returns_promptly_while_the_loop_is_idle(open_leases: OpenLeases, start: Start) -> None:
    recorder = Recorder()
    trigger = start(function_for(recorder.handle), open_leases())
    await asyncio.sleep(IDLE_POLL_SECONDS / 10)

    stopping = time.monotonic()
    await trigger.stop(grace_seconds=10)

    assert time.monotonic() - stopping < IDLE_POLL_SECONDS / 2
    assert recorder.deliveries == []
