"""The embedded change feed's ranges on a real SQLite file: split by tenant, in order, fixed per file."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.adapters.event_store.embedded_event_store import EmbeddedEventStore
from shared.adapters.event_store.feed_ranges import feed_range_of
from shared.domain.stored_event import StoredEvent

MakeStore = Callable[..., EmbeddedEventStore]
TENANTS = [f"tenant-{n}" for n in range(12)]


def stored_event(n: int, tenant: str) -> StoredEvent:
    event_id = str(uuid.UUID(int=n))
    return StoredEvent.from_document(
        {
            "id": event_id,
            "eventId": event_id,
            "tenantId": tenant,
            "eventType": "page_view",
            "timestamp": "2025-03-01T12:00:00+00:00",
            "enrichment": {
                "clientNetwork": "198.51.100.0/24",
                "receivedAt": "2025-03-01T12:00:00+00:00",
                "processedAt": "2025-03-01T12:00:01+00:00",
                "queueLatencyMs": 1000.0,
            },
            "fraud": {"score": 0.0, "suspicious": False},
        }
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events.sqlite3"


@pytest.fixture
async def make_store(path: Path) -> AsyncIterator[MakeStore]:
    opened: list[EmbeddedEventStore] = []

    def make(**kwargs: Any) -> EmbeddedEventStore:
        opened.append(EmbeddedEventStore(path, **kwargs))
        return opened[-1]

    yield make
    for store in opened:
        await store.close()


def test_the_range_of_a_tenant_is_the_same_in_every_python_process() -> None:
    # `hash()` of a str differs between runs (PYTHONHASHSEED): the range must not.
    script = "from shared.adapters.event_store.feed_ranges import feed_range_of; print(feed_range_of('acme', 4))"
    results = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": seed}
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }
    assert results == {str(feed_range_of("acme", 4))}
    # and the tenants of a test spread over every range
    assert {feed_range_of(tenant, 4) for tenant in TENANTS} == {0, 1, 2, 3}


async def test_each_range_holds_its_tenants_events_in_commit_order_and_together_the_whole_feed(
    make_store: MakeStore,
) -> None:
    store = make_store(feed_ranges=4)
    events = [stored_event(n, TENANTS[n % len(TENANTS)]) for n in range(1, 61)]
    for event in events:
        await store.save(event)
    whole = await store.changes(0, 1000)

    per_range = {number: await store.changes(0, 1000, feed_range=number) for number in range(4)}

    assert await store.feed_ranges() == 4
    for number, changes in per_range.items():
        assert all(feed_range_of(change.event.tenant_id, 4) == number for change in changes)
        assert [change.sequence for change in changes] == sorted(change.sequence for change in changes)
    assert sorted(change.sequence for changes in per_range.values() for change in changes) == [
        change.sequence for change in whole
    ]
    # paging one range: after its last sequence, with a limit
    first = per_range[0]
    assert await store.changes(first[1].sequence, 2, feed_range=0) == first[2:4]


async def test_a_file_keeps_the_range_count_it_was_created_with(make_store: MakeStore) -> None:
    first = make_store(feed_ranges=3)
    await first.save(stored_event(1, "acme"))
    again = make_store(feed_ranges=8)

    assert await again.feed_ranges() == 3
    [change] = await again.changes(0, 10, feed_range=feed_range_of("acme", 3))
    assert change.event.tenant_id == "acme"


async def test_a_file_written_before_ranges_existed_is_migrated_and_keeps_working(
    path: Path, make_store: MakeStore
) -> None:
    # GIVEN an events file of the earlier format (no feed_range column) with stored events
    old_events = [stored_event(n, TENANTS[n % len(TENANTS)]) for n in range(1, 21)]
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT NOT NULL,"
            " event_id TEXT NOT NULL, document BLOB NOT NULL, stored_at REAL NOT NULL, UNIQUE (tenant_id, event_id))"
        )
        connection.executemany(
            "INSERT INTO events (tenant_id, event_id, document, stored_at) VALUES (?, ?, ?, 1.0)",
            [(event.tenant_id, event.id, orjson.dumps(event.to_document())) for event in old_events],
        )

    # WHEN the store opens it (with ranges) and stores more
    store = make_store(feed_ranges=4)
    assert await store.save(old_events[0]) is False  # still there, still a duplicate
    new_event = stored_event(100, "acme")
    assert await store.save(new_event) is True

    # THEN every old event is in its tenant's range, and the new one follows in its own
    per_range = {number: await store.changes(0, 1000, feed_range=number) for number in range(4)}
    for number, changes in per_range.items():
        assert all(feed_range_of(change.event.tenant_id, 4) == number for change in changes)
    in_ranges = [change.event for changes in per_range.values() for change in changes]
    assert sorted(in_ranges, key=lambda event: int(uuid.UUID(event.id))) == [*old_events, new_event]
    assert per_range[feed_range_of("acme", 4)][-1].event == new_event
