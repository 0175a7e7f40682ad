"""The embedded event store on a real SQLite file: change feed, durability, real faults.

The `EventStore` contract itself is in test_event_store_contract.py; this is what only the
embedded store has (the change feed) or only a file can do (restart, SIGKILL, file locks).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.adapters.event_store.embedded_event_store import ChangeFeedEntry, EmbeddedEventStore
from shared.adapters.event_store.feed_ranges import feed_range_of
from shared.adapters.sqlite.worker import BUSY_TIMEOUT_SECONDS
from shared.domain.privacy import Subject
from shared.domain.stored_event import StoredEvent
from shared.ports import EventStoreError

REPO = Path(__file__).resolve().parents[3]

MakeStore = Callable[..., EmbeddedEventStore]
TENANTS = [f"tenant-{n}" for n in range(12)]
"""Tenants that spread over every one of four feed ranges."""


def stored_event(n: int, *, tenant: str = "acme", **fields: Any) -> StoredEvent:
    """A small but complete stored event with id UUID(n); `fields` override document fields."""
    event_id = str(uuid.UUID(int=n))
    return StoredEvent.from_document(
        {
            "id": event_id,
            "eventId": event_id,
            "tenantId": tenant,
            "eventType": "page_view",
            "timestamp": "2025-03-01T12:00:00+00:00",
            "url": f"/page/{n}",
            "enrichment": {
                "clientNetwork": "198.51.100.0/24",
                "receivedAt": "2025-03-01T12:00:00+00:00",
                "processedAt": "2025-03-01T12:00:01+00:00",
                "queueLatencyMs": 1000.0,
            },
            "fraud": {"score": 0.0, "suspicious": False},
            **fields,
        }
    )


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 1.0  # every reading is a new instant
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "events.sqlite3"


@pytest.fixture
async def make_store(path: Path) -> AsyncIterator[MakeStore]:
    """Opens stores on the same file (as separate host processes would), closes them all at the end."""
    opened: list[EmbeddedEventStore] = []

    def make(**kwargs: Any) -> EmbeddedEventStore:
        opened.append(EmbeddedEventStore(path, **kwargs))
        return opened[-1]

    yield make
    for store in opened:
        await store.close()


async def read_feed(store: EmbeddedEventStore, after: int = 0, page: int = 100) -> list[ChangeFeedEntry]:
    """The whole feed after `after`, page by page, as the change-feed stage will read it."""
    feed: list[ChangeFeedEntry] = []
    while batch := await store.changes(after, page):
        feed.extend(batch)
        after = batch[-1].sequence
    return feed


def sequences(feed: list[ChangeFeedEntry]) -> list[int]:
    return [change.sequence for change in feed]


def strictly_increasing(numbers: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(numbers))


async def test_the_feed_lists_events_in_the_order_they_were_stored(make_store: MakeStore) -> None:
    clock = FakeClock()
    store = make_store(clock=clock)
    events = [stored_event(n, tenant="acme" if n % 2 else "globex") for n in range(1, 6)]

    for event in events:
        assert await store.save(event) is True

    feed = await store.changes(0, 100)
    assert [change.event for change in feed] == events
    assert strictly_increasing(sequences(feed))
    assert [change.stored_at for change in feed] == [1_700_000_001.0 + n for n in range(5)]
    assert await store.last_sequence() == feed[-1].sequence


async def test_an_empty_store_has_an_empty_feed(make_store: MakeStore) -> None:
    store = make_store()

    assert await store.last_sequence() == 0
    assert await store.changes(0, 10) == []


async def test_the_feed_pages_with_after_and_limit(make_store: MakeStore) -> None:
    store = make_store()
    events = [stored_event(n) for n in range(1, 8)]
    for event in events:
        await store.save(event)

    first = await store.changes(0, 3)
    second = await store.changes(first[-1].sequence, 3)
    third = await store.changes(second[-1].sequence, 3)

    assert [len(first), len(second), len(third)] == [3, 3, 1]
    assert [change.event for change in first + second + third] == events
    assert await store.changes(third[-1].sequence, 3) == []
    assert await store.changes(await store.last_sequence(), 100) == []


async def test_the_feed_hands_over_each_document_as_it_was_stored(make_store: MakeStore, path: Path) -> None:
    # GIVEN an event saved, and a row the model does not read (written by a newer version, say)
    store = make_store()
    await store.save(stored_event(1))
    foreign = {**stored_event(2).to_document(), "documentVersion": 2, "addedLater": {"x": 1}}
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "INSERT INTO events (tenant_id, event_id, document, stored_at) VALUES (?, ?, ?, ?)",
            ("acme", foreign["id"], orjson.dumps(foreign), 1.0),
        )

    # WHEN the feed is read
    feed = await store.changes(0, 10)

    # THEN each entry is the stored JSON as it is, as Cosmos DB's change feed hands it over:
    # the reader validates what it takes
    assert [change.document for change in feed] == [stored_event(1).to_document(), foreign]
    assert feed[0].event == stored_event(1)


async def test_a_duplicate_is_not_in_the_feed(make_store: MakeStore) -> None:
    store = make_store(clock=FakeClock())
    await store.save(stored_event(1))
    await store.save(stored_event(2))
    [original, _] = await store.changes(0, 10)

    assert await store.save(stored_event(1, eventType="purchase")) is False
    await store.save(stored_event(3))

    feed = await store.changes(0, 10)
    assert [change.event.url for change in feed] == ["/page/1", "/page/2", "/page/3"]
    assert feed[0] == original  # same sequence number, stored_at and content as the first save


async def test_concurrent_saves_get_distinct_increasing_sequence_numbers(make_store: MakeStore) -> None:
    store = make_store()
    events = [stored_event(n) for n in range(1, 301)]

    results = await asyncio.gather(*(store.save(event) for event in events))

    assert all(results)
    feed = await read_feed(store, page=64)
    assert strictly_increasing(sequences(feed))
    assert sorted(change.event.id for change in feed) == sorted(event.id for event in events)


async def test_a_reader_following_the_feed_during_writes_misses_nothing(make_store: MakeStore) -> None:
    # GIVEN two writers on the same file (two host processes, two connections) and a reader
    # following the feed with its cursor while they write
    writers = [make_store(), make_store()]
    reader = make_store()
    events = [stored_event(n) for n in range(1, 201)]
    done = asyncio.Event()
    seen: list[ChangeFeedEntry] = []

    async def follow() -> None:
        cursor = 0
        while True:
            finished = done.is_set()  # read before the page: after `done`, one last full pass
            batch = await reader.changes(cursor, 50)
            seen.extend(batch)
            if batch:
                cursor = batch[-1].sequence
            elif finished:
                return
            else:
                await asyncio.sleep(0)

    async def write() -> None:
        await asyncio.gather(*(writers[n % 2].save(event) for n, event in enumerate(events)))
        done.set()

    # WHEN they all run at once
    await asyncio.gather(follow(), write())

    # THEN the cursor never skipped a commit: sequence numbers grow in commit order
    assert strictly_increasing(sequences(seen))
    assert sorted(change.event.id for change in seen) == sorted(event.id for event in events)


async def test_everything_survives_a_restart_and_the_sequence_continues(make_store: MakeStore) -> None:
    # GIVEN a store that stored events and was closed
    first = make_store()
    for n in range(1, 11):
        await first.save(stored_event(n))
    before = await first.changes(0, 100)
    last = await first.last_sequence()
    await first.close()

    # WHEN the file is opened again
    second = make_store()

    # THEN everything is there, duplicates are still recognised, and new sequence numbers follow
    assert await second.changes(0, 100) == before
    assert await second.get("acme", stored_event(4).id) == stored_event(4)
    assert await second.save(stored_event(4)) is False
    assert await second.save(stored_event(11)) is True
    [new] = await second.changes(last, 100)
    assert new.sequence > last
    assert new.event == stored_event(11)


def test_every_acknowledged_event_survives_a_killed_process(path: Path) -> None:
    # GIVEN a separate process that saves events in concurrent groups and prints each id once
    # save() returned for it
    script = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from shared.adapters.event_store.embedded_event_store import EmbeddedEventStore
        from shared.domain.stored_event import StoredEvent

        def event(n):
            event_id = f"00000000-0000-0000-0000-{n:012d}"
            return StoredEvent.from_document({
                "id": event_id, "eventId": event_id, "tenantId": "acme", "eventType": "page_view",
                "timestamp": "2025-03-01T12:00:00+00:00",
                "enrichment": {"clientNetwork": "198.51.100.0/24", "receivedAt": "2025-03-01T12:00:00+00:00",
                               "processedAt": "2025-03-01T12:00:01+00:00", "queueLatencyMs": 1000.0},
                "fraud": {"score": 0.0, "suspicious": False},
            })

        async def save(store, n):
            await store.save(event(n))
            print(event(n).id, flush=True)

        async def main():
            store = EmbeddedEventStore(Path(sys.argv[1]))
            n = 0
            while True:  # until killed
                await asyncio.gather(*(save(store, n + k) for k in range(20)))
                n += 20

        asyncio.run(main())
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout is not None
    acknowledged = [child.stdout.readline().strip() for _ in range(300)]

    # WHEN it is killed mid-stream, without any chance to clean up
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    acknowledged += child.stdout.read().split()  # acknowledged before the kill, not yet read
    child.stdout.close()

    # THEN a new process finds every acknowledged event, each once, in a well-ordered feed
    async def stored() -> list[ChangeFeedEntry]:
        store = EmbeddedEventStore(path)
        try:
            return await read_feed(store)
        finally:
            await store.close()

    feed = asyncio.run(stored())
    stored_ids = [change.event.id for change in feed]
    assert len(set(stored_ids)) == len(stored_ids)
    assert set(acknowledged) <= set(stored_ids)
    assert strictly_increasing(sequences(feed))


@contextlib.contextmanager
def write_lock_held_by_another_process(path: Path) -> Iterator[None]:
    """Another process takes the database's write lock (`BEGIN EXCLUSIVE`) and keeps it until exit."""
    script = textwrap.dedent(
        """
        import sqlite3, sys
        connection = sqlite3.connect(sys.argv[1], isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        print("locked", flush=True)
        sys.stdin.readline()  # until told to let go
        connection.execute("ROLLBACK")
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.stdin.write("release\n")
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()


async def test_a_write_lock_held_by_another_process_fails_the_call_and_the_store_recovers(
    make_store: MakeStore, path: Path
) -> None:
    # GIVEN a working store
    store = make_store()
    assert await store.save(stored_event(1)) is True

    # WHEN another process holds the database's write lock
    with write_lock_held_by_another_process(path):
        started = time.monotonic()
        with pytest.raises(EventStoreError, match="locked") as error:
            await store.save(stored_event(2))
        waited = time.monotonic() - started

    # THEN the call failed as a port error once the busy timeout ran out, instead of hanging
    assert isinstance(error.value.__cause__, sqlite3.OperationalError)
    assert BUSY_TIMEOUT_SECONDS - 1 < waited < BUSY_TIMEOUT_SECONDS + 5
    # AND once the lock is gone the same store works again; the failed save left no trace
    assert await store.get("acme", stored_event(2).id) is None
    assert await store.save(stored_event(2)) is True
    assert [change.event for change in await store.changes(0, 10)] == [stored_event(1), stored_event(2)]


@pytest.fixture
def not_a_database(path: Path) -> Path:
    path.write_bytes(b"this is not an SQLite database, but it is long enough to have a header" * 10)
    return path


async def test_a_file_that_is_not_a_database_raises_the_port_error(not_a_database: Path) -> None:
    store = EmbeddedEventStore(not_a_database)

    try:
        with pytest.raises(EventStoreError) as error:
            await store.save(stored_event(1))
    finally:
        await store.close()

    assert isinstance(error.value.__cause__, sqlite3.DatabaseError)


async def test_a_store_that_could_not_open_tries_again_on_the_next_call(tmp_path: Path) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the data folder should be")
    store = EmbeddedEventStore(blocked / "events.sqlite3")
    try:
        with pytest.raises(EventStoreError):
            await store.check()

        blocked.unlink()  # the operator fixes the folder

        await store.check()
        assert await store.save(stored_event(1)) is True
    finally:
        await store.close()


async def test_closing_twice_is_harmless_and_a_closed_store_refuses_calls(make_store: MakeStore) -> None:
    store = make_store()
    await store.save(stored_event(1))

    await store.close()
    await store.close()

    with pytest.raises(EventStoreError):
        await store.changes(0, 10)
    with pytest.raises(EventStoreError):
        await store.last_sequence()


# The feed's ranges: split by tenant, in order, fixed per file.


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
    events = [stored_event(n, tenant=TENANTS[n % len(TENANTS)]) for n in range(1, 61)]
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
    await first.save(stored_event(1, tenant="acme"))
    again = make_store(feed_ranges=8)

    assert await again.feed_ranges() == 3
    [change] = await again.changes(0, 10, feed_range=feed_range_of("acme", 3))
    assert change.event.tenant_id == "acme"


async def test_a_file_written_before_ranges_existed_is_migrated_and_keeps_working(
    path: Path, make_store: MakeStore
) -> None:
    # GIVEN an events file of the earlier format (no feed_range column) with stored events
    old_events = [stored_event(n, tenant=TENANTS[n % len(TENANTS)]) for n in range(1, 21)]
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
    new_event = stored_event(100, tenant="acme")
    assert await store.save(new_event) is True

    # THEN every old event is in its tenant's range, and the new one follows in its own
    per_range = {number: await store.changes(0, 1000, feed_range=number) for number in range(4)}
    for number, changes in per_range.items():
        assert all(feed_range_of(change.event.tenant_id, 4) == number for change in changes)
    in_ranges = [change.event for changes in per_range.values() for change in changes]
    assert sorted(in_ranges, key=lambda event: int(uuid.UUID(event.id))) == [*old_events, new_event]
    assert per_range[feed_range_of("acme", 4)][-1].event == new_event


# Erasure: the bytes leave the files, and the feed goes on.


def file_bytes(path: Path) -> bytes:
    """The database file and its write-ahead log, as a forensic reader would see them."""
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.mark.parametrize("how", ["erase_subject_events", "delete_events"])
async def test_erased_events_are_gone_from_the_file_and_its_log(path: Path, make_store: MakeStore, how: str) -> None:
    # GIVEN an erased user's event carrying a unique marker, among another user's events
    marker = f"marker-{uuid.uuid4().hex}"
    store = make_store()
    erased = stored_event(1, userId="user-7", properties={"note": marker})
    kept = [stored_event(n, userId="user-8", properties={"note": f"kept-{n}"}) for n in range(2, 40)]
    # In the middle of a page that stays full enough not to be rebuilt by the delete (a
    # rebuilt page would lose the old bytes even without secure_delete).
    await store.save_many([*kept[:20], erased, *kept[20:]])
    assert marker.encode() in file_bytes(path)

    # WHEN the user's events are erased (either way)
    if how == "erase_subject_events":
        assert await store.erase_subject_events(Subject("acme", "userId", "user-7")) == 1
    else:
        assert await store.delete_events("acme", [erased.id]) == 1

    # THEN the marker is nowhere in the files while the store is still open (and the log is
    # empty), yet every other event is readable
    assert marker.encode() not in file_bytes(path)
    assert path.with_name(path.name + "-wal").stat().st_size == 0
    assert [await store.get("acme", event.id) for event in kept] == kept


async def test_a_truncation_lost_with_a_killed_process_is_made_by_the_next_erasure(
    path: Path, make_store: MakeStore
) -> None:
    # GIVEN an erased event whose delete committed but whose log truncation never ran (the
    # erasing process was killed in between): the row as it was is still in the log
    marker = f"marker-{uuid.uuid4().hex}"
    store = make_store()
    erased = stored_event(1, userId="user-7", properties={"note": marker})
    kept = [stored_event(n, userId="user-8", properties={"note": f"kept-{n}"}) for n in range(2, 40)]
    await store.save_many([*kept[:20], erased, *kept[20:]])
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as killed:
        killed.execute("PRAGMA secure_delete=ON")
        killed.execute("DELETE FROM events WHERE event_id = ?", (erased.id,))
        assert marker.encode() in file_bytes(path)

        # WHEN the erasure runs again after a restart (a new store on the file), finding nothing
        rerun = make_store()
        assert await rerun.erase_subject_events(Subject("acme", "userId", "user-7")) == 0

    # THEN the log is truncated all the same: the old row is gone from the files
    assert marker.encode() not in file_bytes(path)


async def test_deleting_nothing_leaves_the_log_alone(path: Path, make_store: MakeStore) -> None:
    store = make_store()
    # The store's first delete truncates whatever a killed predecessor may have left; after it,
    await store.erase_subject_events(Subject("acme", "userId", "nobody"))
    await store.save(stored_event(1))

    # a delete of nothing leaves the log alone
    assert await store.erase_subject_events(Subject("acme", "userId", "nobody")) == 0
    assert path.with_name(path.name + "-wal").stat().st_size > 0


async def test_a_reader_that_keeps_the_log_from_truncating_does_not_fail_the_erasure(
    path: Path, make_store: MakeStore, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN another connection in the middle of a read (as another host process may be)
    store = make_store()
    await store.save_many([stored_event(1, userId="user-7"), stored_event(2, userId="user-8")])
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()

        # WHEN the user is erased
        erased = await store.erase_subject_events(Subject("acme", "userId", "user-7"))
        reader.execute("COMMIT")

    # THEN the erasure stands, and the log that could not be truncated is named in a warning
    assert erased == 1
    assert await store.count_subject_events(Subject("acme", "userId", "user-7")) == 0
    assert any("could not be truncated" in record.getMessage() for record in caplog.records)


async def test_the_feed_goes_on_past_deleted_events(make_store: MakeStore) -> None:
    # GIVEN a feed whose last and a middle event are deleted
    store = make_store()
    events = [stored_event(n, userId="user-7" if n in (2, 4) else "user-8") for n in range(1, 5)]
    await store.save_many(events)
    before = await read_feed(store)
    assert await store.erase_subject_events(Subject("acme", "userId", "user-7")) == 2

    # WHEN a new event is stored
    await store.save(stored_event(5))

    # THEN a reader from the start sees the others in order, and a reader that was past the
    # deleted last event still finds the new one (a deleted number is never handed out again)
    assert [change.event for change in await read_feed(store)] == [events[0], events[2], stored_event(5)]
    [new] = await store.changes(before[-1].sequence, 10)
    assert new.event == stored_event(5)
    assert new.sequence > before[-1].sequence


async def test_an_identifier_with_a_nul_is_its_own_subject(make_store: MakeStore) -> None:
    # GIVEN two users whose ids differ after a NUL (the API accepts any character in a userId)
    store = make_store()
    await store.save_many(
        [stored_event(1, userId="u\x00x"), stored_event(2, userId="u"), stored_event(3, userId="é'\"\\/\n\u2028")]
    )

    # THEN each is counted, exported and erased alone: neither erasure touches the other's event
    with_nul, plain = Subject("acme", "userId", "u\x00x"), Subject("acme", "userId", "u")
    assert await store.count_subject_events(plain) == 1
    assert [event.user_id async for event in store.subject_events(plain)] == ["u"]
    assert [event.user_id async for event in store.subject_events(with_nul)] == ["u\x00x"]
    assert await store.erase_subject_events(with_nul) == 1
    assert await store.count_subject_events(plain) == 1
    # and the JSON text comparison still finds ids JSON escapes
    assert await store.erase_subject_events(Subject("acme", "userId", "é'\"\\/\n\u2028")) == 1
