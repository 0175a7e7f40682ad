"""The change feed shared by several instances through leases, on real files and real processes.

Several `ChangeFeedTrigger`s on one event store and one lease file are several instances of
the app (each with its own owner id); the crash test runs them as processes
(`tests.integration.changefeed_instance`) and kills one.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import azure.functions as func
import orjson
import pytest

from cloudscale_local.host.changefeed_trigger import ChangeFeedTrigger
from cloudscale_local.host.feed_timings import FeedTimings
from cloudscale_local.host.functions import ChangeFeedFunction
from cloudscale_local.host.leases import LeaseStore
from shared.adapters.event_store.embedded_event_store import EmbeddedEventStore
from shared.adapters.event_store.feed_ranges import feed_range_of
from shared.domain.stored_event import StoredEvent
from tests.integration import changefeed_instance
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
NAME = "record"
RANGES = 4
TENANTS = [f"tenant-{n}" for n in range(12)]
FAST = FeedTimings(acquire_interval=0.05, expiration_interval=60.0, renew_interval=0.5, feed_poll_delay=0.05)
"""Balancing every 50 ms, and leases that expire only after a minute: what moves in these
tests moves by balancing and release, never by expiry."""


def stored_event(n: int) -> StoredEvent:
    event_id = str(uuid.UUID(int=n))
    return StoredEvent.from_document(
        {
            "id": event_id,
            "eventId": event_id,
            "tenantId": TENANTS[n % len(TENANTS)],
            "eventType": "page_view",
            "timestamp": "2026-03-01T12:00:00+00:00",
            "enrichment": {
                "clientNetwork": "198.51.100.0/24",
                "receivedAt": "2026-03-01T12:00:00+00:00",
                "processedAt": "2026-03-01T12:00:01+00:00",
                "queueLatencyMs": 1000.0,
            },
            "fraud": {"score": 0.0, "suspicious": False},
        }
    )


class Recorder:
    """A function body recording (tenant, event id, sequence) per document, in delivery order."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, str, int]] = []

    async def handle(self, documents: func.DocumentList) -> None:
        self.delivered.extend((d["tenantId"], d["eventId"], int(d["_lsn"])) for d in documents)


def function_for(recorder: Recorder, timings: FeedTimings = FAST) -> ChangeFeedFunction:
    return ChangeFeedFunction(
        name=NAME,
        database="cloudscale",
        container="events",
        max_items=5,
        retry=None,
        handler=recorder.handle,
        argument="documents",
        timings=timings,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedEventStore]:
    opened = EmbeddedEventStore(tmp_path / "events.sqlite3", feed_ranges=RANGES)
    yield opened
    await opened.close()


@pytest.fixture
def leases(tmp_path: Path) -> Iterator[Callable[[], LeaseStore]]:
    """Opens lease stores on the one lease file, one per instance."""
    opened: list[LeaseStore] = []

    def open_one() -> LeaseStore:
        opened.append(LeaseStore(tmp_path / "leases.sqlite3"))
        return opened[-1]

    yield open_one
    for lease_store in opened:
        lease_store.close()


@pytest.fixture
async def start(
    store: EmbeddedEventStore,
) -> AsyncIterator[Callable[[ChangeFeedFunction, LeaseStore], ChangeFeedTrigger]]:
    started: list[ChangeFeedTrigger] = []

    def run(function: ChangeFeedFunction, lease_store: LeaseStore) -> ChangeFeedTrigger:
        trigger = ChangeFeedTrigger(function, store, lease_store)
        trigger.start()
        started.append(trigger)
        return trigger

    yield run
    for trigger in started:
        await trigger.stop(grace_seconds=1)


async def save(store: EmbeddedEventStore, numbers: range) -> None:
    for n in numbers:
        assert await store.save(stored_event(n)) is True


def in_order_per_tenant(delivered: list[tuple[str, str, int]]) -> bool:
    by_tenant: dict[str, list[int]] = defaultdict(list)
    for tenant, _, sequence in delivered:
        by_tenant[tenant].append(sequence)
    return all(sequences == sorted(sequences) for sequences in by_tenant.values())


async def test_two_instances_split_the_ranges_and_deliver_every_event_once_in_order_per_tenant(
    store: EmbeddedEventStore,
    leases: Callable[[], LeaseStore],
    start: Callable[[ChangeFeedFunction, LeaseStore], ChangeFeedTrigger],
) -> None:
    # GIVEN one instance that took every lease, then a second that balanced with it
    first, second = Recorder(), Recorder()
    one = start(function_for(first), leases())
    await wait_until(lambda: len(one.owned_ranges) == RANGES)
    two = start(function_for(second), leases())
    await wait_until(lambda: len(one.owned_ranges) == len(two.owned_ranges) == RANGES // 2)
    assert one.owned_ranges.isdisjoint(two.owned_ranges)
    assert (one.stats.acquired, two.stats.acquired, one.stats.lost) == (4, 2, 2)

    # WHEN events of twelve tenants are stored
    await save(store, range(1, 201))
    await wait_until(lambda: len(first.delivered) + len(second.delivered) >= 200)

    # THEN each instance got only its ranges' events, together every event exactly once,
    # each tenant's in commit order
    for recorder, trigger in ((first, one), (second, two)):
        assert {feed_range_of(tenant, RANGES) for tenant, _, _ in recorder.delivered} == trigger.owned_ranges
        assert in_order_per_tenant(recorder.delivered)
    ids = sorted(event_id for _, event_id, _ in first.delivered + second.delivered)
    assert ids == sorted(stored_event(n).event_id for n in range(1, 201))


async def test_a_graceful_stop_hands_the_leases_over_at_once(
    store: EmbeddedEventStore,
    leases: Callable[[], LeaseStore],
    start: Callable[[ChangeFeedFunction, LeaseStore], ChangeFeedTrigger],
) -> None:
    # GIVEN two balanced instances whose leases would take a minute to expire
    first, second = Recorder(), Recorder()
    one = start(function_for(first), leases())
    await wait_until(lambda: len(one.owned_ranges) == RANGES)
    two = start(function_for(second), leases())
    await wait_until(lambda: len(two.owned_ranges) == RANGES // 2)

    # WHEN the first stops gracefully
    stopping = time.monotonic()
    await one.stop()

    # THEN the second holds every lease at its next balancing, long before any would expire
    await wait_until(lambda: len(two.owned_ranges) == RANGES, within=5)
    assert time.monotonic() - stopping < FAST.expiration_interval / 10
    # AND it delivers every range's new events
    await save(store, range(1, 41))
    await wait_until(lambda: len(second.delivered) == 40)
    assert first.delivered == []


async def test_a_lease_taken_while_its_batch_is_in_flight_is_not_checkpointed_by_the_old_owner(
    store: EmbeddedEventStore,
    leases: Callable[[], LeaseStore],
    start: Callable[[ChangeFeedFunction, LeaseStore], ChangeFeedTrigger],
) -> None:
    # GIVEN an instance whose function is in the middle of a batch of range r
    entered, release = asyncio.Event(), asyncio.Event()
    batches: list[list[int]] = []

    async def slow(documents: func.DocumentList) -> None:
        batches.append([int(d["_lsn"]) for d in documents])
        entered.set()
        await release.wait()

    function = ChangeFeedFunction(NAME, "cloudscale", "events", 5, None, slow, "documents", timings=FAST)
    lease_store = leases()
    one = start(function, lease_store)
    await save(store, range(1, 2))
    await asyncio.wait_for(entered.wait(), timeout=5)
    busy = feed_range_of(stored_event(1).tenant_id, RANGES)

    # WHEN another instance takes that lease (as after an expiry), then the batch finishes
    other = leases()
    [lease] = [lease for lease in await other.read_all(NAME) if lease.feed_range == busy]
    await other.acquire(lease, "another instance")
    release.set()

    # THEN the old owner's checkpoint is refused: the range stays at 0 for the new owner,
    # and the old owner stops working on it
    await wait_until(lambda: busy not in one.owned_ranges)
    assert (await other.checkpoints(NAME))[busy] == 0
    assert one.stats.lost == 1
    assert busy not in one.stats.checkpoints


async def test_an_old_format_data_folder_resumes_every_range_after_its_single_checkpoint(
    tmp_path: Path,
    leases: Callable[[], LeaseStore],
    start: Callable[[ChangeFeedFunction, LeaseStore], ChangeFeedTrigger],
) -> None:
    # GIVEN an events file without ranges and a lease file with one checkpoint for the
    # function, at the tenth of twenty events
    events_path, leases_path = tmp_path / "old" / "events.sqlite3", tmp_path / "leases.sqlite3"
    events_path.parent.mkdir()
    with contextlib.closing(sqlite3.connect(events_path)) as connection, connection:
        connection.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT NOT NULL,"
            " event_id TEXT NOT NULL, document BLOB NOT NULL, stored_at REAL NOT NULL, UNIQUE (tenant_id, event_id))"
        )
        connection.executemany(
            "INSERT INTO events (tenant_id, event_id, document, stored_at) VALUES (?, ?, ?, 1.0)",
            [
                (event.tenant_id, event.id, orjson.dumps(event.to_document()))
                for event in (stored_event(n) for n in range(1, 21))
            ],
        )
    with contextlib.closing(sqlite3.connect(leases_path)) as connection, connection:
        connection.execute(
            "CREATE TABLE leases (name TEXT PRIMARY KEY, sequence INTEGER NOT NULL,"
            " updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
        )
        connection.execute("INSERT INTO leases (name, sequence) VALUES (?, 10)", (NAME,))

    # WHEN the host starts on them
    old_store = EmbeddedEventStore(events_path, feed_ranges=RANGES)
    recorder = Recorder()
    trigger = ChangeFeedTrigger(function_for(recorder), old_store, leases())
    trigger.start()
    try:
        await wait_until(lambda: len(recorder.delivered) >= 10)
        await asyncio.sleep(FAST.feed_poll_delay * 4)  # and nothing more comes
    finally:
        await trigger.stop()
        await old_store.close()

    # THEN exactly the events after the old checkpoint were delivered, each tenant's in order
    assert sorted(sequence for _, _, sequence in recorder.delivered) == list(range(11, 21))
    assert in_order_per_tenant(recorder.delivered)


def lease_owners(leases_path: Path) -> list[str | None]:
    with contextlib.closing(sqlite3.connect(f"{leases_path.as_uri()}?mode=ro", uri=True)) as connection:
        rows = connection.execute("SELECT owner FROM feed_leases WHERE function = ? ORDER BY feed_range", (NAME,))
        return [row[0] for row in rows.fetchall()]


def lease_stamps(leases_path: Path, owner: str) -> list[float]:
    """When each lease `owner` holds was last written."""
    with contextlib.closing(sqlite3.connect(f"{leases_path.as_uri()}?mode=ro", uri=True)) as connection:
        rows = connection.execute(
            "SELECT renewed_at FROM feed_leases WHERE function = ? AND owner = ?", (NAME, owner)
        ).fetchall()
        return [float(row[0]) for row in rows]


def recorded_ids(*files: Path) -> list[str]:
    return [line.split()[1] for file in files if file.exists() for line in file.read_text().splitlines()]


class Instance:
    """A change-feed instance in a process of its own."""

    def __init__(self, data_dir: Path, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.changefeed_instance", str(data_dir), str(out)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready, self.owner = self.process.stdout.readline().split()
        assert ready == "ready"

    def end(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


async def test_a_killed_instance_s_leases_pass_to_the_survivor_after_they_expire_and_nothing_is_lost(
    tmp_path: Path,
) -> None:
    leases_path = tmp_path / "leases.sqlite3"
    writer = EmbeddedEventStore(tmp_path / "events.sqlite3", feed_ranges=RANGES)
    instances: list[Instance] = []
    try:
        # GIVEN two instance processes that balanced the four leases between them
        instances.append(Instance(tmp_path, tmp_path / "a.txt"))
        await wait_until(lambda: lease_owners(leases_path) == [instances[0].owner] * RANGES, within=20)
        instances.append(Instance(tmp_path, tmp_path / "b.txt"))
        a, b = instances
        await wait_until(
            lambda: sorted(map(str, lease_owners(leases_path))) == sorted([a.owner, b.owner] * 2), within=20
        )

        # WHEN events are stored, and the first is SIGKILLed halfway (no release)
        await save(writer, range(1, 101))
        await wait_until(lambda: len(recorded_ids(a.out)) > 0, within=20)
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(timeout=10)
        last_renewed = lease_stamps(leases_path, a.owner)  # final: nobody renews them now
        assert len(last_renewed) == 2  # still its own until they expire
        await save(writer, range(101, 201))

        # THEN the survivor takes them only once they expired, and every event reached the
        # function (the batches in flight at the kill may come twice; nothing is missing)
        await wait_until(lambda: lease_owners(leases_path) == [b.owner] * RANGES, within=30)
        assert time.time() > max(last_renewed) + changefeed_instance.EXPIRATION_MS / 1000
        expected = {stored_event(n).event_id for n in range(1, 201)}
        await wait_until(lambda: set(recorded_ids(a.out, b.out)) >= expected, within=30)
        assert set(recorded_ids(a.out, b.out)) == expected
    finally:
        for instance in instances:
            instance.end()
        await writer.close()
