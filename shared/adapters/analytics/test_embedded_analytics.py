"""The embedded analytics store on a real SQLite file: idempotent rows, columns, history reads, faults."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import shared.adapters.sqlite.worker as sqlite_worker
from shared.adapters.analytics.embedded_analytics import ANALYTICS_TABLE, EmbeddedAnalyticsStore
from shared.domain.analytics import ANALYTICS_COLUMNS, AnalyticsRow, to_analytics_row
from shared.domain.stored_event import StoredEvent
from shared.ports import AnalyticsSinkError

HOUR_10 = datetime(2026, 3, 1, 10, tzinfo=UTC)
ARRIVED = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)


def row(n: int, *, stored_at: datetime = HOUR_10 + timedelta(minutes=5), **changes: Any) -> AnalyticsRow:
    """The row of a complete stored event with id UUID(n); `changes` replace row fields."""
    event_id = str(uuid.UUID(int=n))
    event = StoredEvent.from_document(
        {
            "id": event_id,
            "eventId": event_id,
            "tenantId": "acme",
            "eventType": "purchase",
            "timestamp": "2026-03-01T09:59:59+00:00",
            "userId": f"user-{n}",
            "url": f"/page/{n}",
            "properties": {"amount": 42.5, "items": ["sku-1", "sku-2"], "note": 'naïve "quoted"'},
            "enrichment": {
                "clientNetwork": "203.0.113.0/24",
                "agent": {"browser": "Chrome", "os": "Linux", "device": "Other", "isBot": False},
                "receivedAt": "2026-03-01T10:00:00.250000+00:00",
                "processedAt": "2026-03-01T10:00:01+00:00",
                "queueLatencyMs": 750.0,
            },
            "fraud": {
                "score": 0.85,
                "suspicious": True,
                "reasons": [
                    {"rule": "ip-velocity", "code": "VELOCITY_IP_MINUTE", "weight": 0.5, "description": "fast"},
                    {"rule": "users-per-ip", "code": "MANY_USERS_PER_IP", "weight": 0.35, "description": "many"},
                ],
            },
        }
    )
    return dataclasses.replace(to_analytics_row(event, stored_at), **changes)


def read_rows(path: Path, where: str = "1") -> list[dict[str, Any]]:
    """The table's rows as another connection reads them (read-only, as `cloudscale query` does)."""
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(found) for found in connection.execute(f"SELECT * FROM {ANALYTICS_TABLE} WHERE {where}")]
    finally:
        connection.close()


async def test_writing_the_same_event_twice_keeps_one_row(store: EmbeddedAnalyticsStore, path: Path) -> None:
    # GIVEN a batch already written
    await store.write([row(1), row(2)])
    first = read_rows(path)

    # WHEN it is delivered again (a retried batch), with one row twice and one new row
    await store.write([row(2, event_type="changed"), row(1), row(1), row(3)])

    # THEN each event has one row, and a redelivery changed nothing of the first one
    rows = read_rows(path)
    assert sorted(found["EventId"] for found in rows) == [str(uuid.UUID(int=n)) for n in (1, 2, 3)]
    assert [found for found in rows if found["EventId"] != str(uuid.UUID(int=3))] == first
    assert {found["EventType"] for found in rows} == {"purchase"}


async def test_two_tenants_events_with_one_event_id_are_two_rows(store: EmbeddedAnalyticsStore, path: Path) -> None:
    # An event is (tenantId, eventId): the second tenant's row is not a duplicate of the first.
    await store.write([row(1), row(1, tenant_id="globex")])
    await store.write([row(1, tenant_id="globex", event_type="changed")])  # a redelivery

    rows = read_rows(path, "1 ORDER BY TenantId")
    assert [(found["TenantId"], found["EventId"], found["EventType"]) for found in rows] == [
        ("acme", str(uuid.UUID(int=1)), "purchase"),
        ("globex", str(uuid.UUID(int=1)), "purchase"),
    ]
    assert await store.hourly_counts(HOUR_10, HOUR_10 + timedelta(hours=1)) == {HOUR_10: 2}
    assert await store.event_keys(HOUR_10, HOUR_10 + timedelta(hours=1)) == {
        ("acme", str(uuid.UUID(int=1))),
        ("globex", str(uuid.UUID(int=1))),
    }


SEGMENT_COLUMNS = ("AnonymousId", "Name", "GroupId", "PreviousId", "Traits", "Context", "OriginalTimestamp", "SentAt")
OLD_COLUMNS = [(name, kind) for name, kind in ANALYTICS_COLUMNS if name not in SEGMENT_COLUMNS]
"""The columns of files made before the Segment-compatible API's columns were added."""


def make_file_keyed_on_event_id_alone(path: Path, rows: list[tuple[str, str]]) -> None:
    """An analytics file as earlier versions made it: `EventId` the primary key, no Segment columns."""
    columns = ",\n".join(
        f"{name} {'REAL' if kind == 'real' else 'INTEGER' if kind == 'bool' else 'TEXT'}"
        f"{' PRIMARY KEY' if name == 'EventId' else ''}"
        for name, kind in OLD_COLUMNS
    )
    connection = sqlite3.connect(path)
    try:
        connection.executescript(
            f"CREATE TABLE {ANALYTICS_TABLE} ({columns}, AnalyticsAt TEXT NOT NULL);"
            f"CREATE INDEX {ANALYTICS_TABLE}_stored ON {ANALYTICS_TABLE} (StoredAt);"
            f"CREATE INDEX {ANALYTICS_TABLE}_received ON {ANALYTICS_TABLE} (ReceivedAt);"
        )
        connection.executemany(
            f"INSERT INTO {ANALYTICS_TABLE} (EventId, TenantId, EventType, StoredAt, AnalyticsAt)"
            " VALUES (?, ?, 'purchase', '2026-03-01T10:05:00.000000Z', '2026-03-01T15:30:00.000000Z')",
            [(event_id, tenant) for tenant, event_id in rows],
        )
        connection.commit()
    finally:
        connection.close()


async def test_a_file_keyed_on_event_id_alone_is_migrated_on_open_keeping_its_rows(path: Path) -> None:
    # GIVEN a file an earlier version wrote, with one row of tenant acme's event 1 and of event 2
    make_file_keyed_on_event_id_alone(path, [("acme", str(uuid.UUID(int=1))), ("acme", str(uuid.UUID(int=2)))])

    # WHEN it is opened and tenant globex's event with the same id 1 arrives, and acme's again
    store = EmbeddedAnalyticsStore(path, clock=ARRIVED.timestamp)
    try:
        await store.write([row(1, tenant_id="globex"), row(1)])
        keys = await store.event_keys(HOUR_10, HOUR_10 + timedelta(hours=1))
    finally:
        await store.close()

    # THEN the old rows are all there, globex's row is stored beside acme's, acme's is not doubled
    assert keys == {("acme", str(uuid.UUID(int=1))), ("acme", str(uuid.UUID(int=2))), ("globex", str(uuid.UUID(int=1)))}
    assert len(read_rows(path)) == 3
    connection = sqlite3.connect(path)
    try:
        indexes = {found[1] for found in connection.execute(f"PRAGMA index_list({ANALYTICS_TABLE})")}
        tables = {found[0] for found in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        connection.close()
    assert {f"{ANALYTICS_TABLE}_identity", f"{ANALYTICS_TABLE}_stored", f"{ANALYTICS_TABLE}_received"} <= indexes
    assert tables == {ANALYTICS_TABLE}, "the copy the migration made is gone"

    # AND opening it again changes nothing
    again = EmbeddedAnalyticsStore(path, clock=ARRIVED.timestamp)
    try:
        assert len(await again.event_keys(HOUR_10, HOUR_10 + timedelta(hours=1))) == 3
    finally:
        await again.close()


async def test_a_row_reads_back_column_by_column(store: EmbeddedAnalyticsStore, path: Path) -> None:
    # GIVEN one row with every field set, and one with no properties and no agent
    full = row(1, stored_at=datetime(2026, 3, 1, 10, 5, 0, 1, tzinfo=UTC))
    bare = row(2, properties=None, browser=None, os=None, device=None, is_bot=True, suspicious=False, fraud_reasons=())

    await store.write([full, bare])

    [written, other] = read_rows(path, "1 ORDER BY UserId")
    # THEN the table has Data Explorer's columns in order, plus the arrival time
    assert list(written) == [name for name, _ in ANALYTICS_COLUMNS] + ["AnalyticsAt"]
    assert written == {
        "EventId": str(uuid.UUID(int=1)),
        "TenantId": "acme",
        "EventType": "purchase",
        "Timestamp": "2026-03-01T09:59:59.000000Z",
        "ReceivedAt": "2026-03-01T10:00:00.250000Z",
        "ProcessedAt": "2026-03-01T10:00:01.000000Z",
        "StoredAt": "2026-03-01T10:05:00.000001Z",
        "CorrelationId": None,
        "UserId": "user-1",
        "SessionId": None,
        "Url": "/page/1",
        "ClientNetwork": "203.0.113.0/24",
        "Browser": "Chrome",
        "Os": "Linux",
        "Device": "Other",
        "IsBot": 0,
        "FraudScore": 0.85,
        "Suspicious": 1,
        "FraudReasons": written["FraudReasons"],
        "Properties": written["Properties"],
        "AnonymousId": None,
        "Name": None,
        "GroupId": None,
        "PreviousId": None,
        "Traits": None,
        "Context": None,
        "OriginalTimestamp": None,
        "SentAt": None,
        "AnalyticsAt": "2026-03-01T15:30:00.000000Z",
    }
    # AND the dynamic columns are JSON text, booleans 0/1, missing values NULL
    assert json.loads(written["FraudReasons"]) == ["VELOCITY_IP_MINUTE", "MANY_USERS_PER_IP"]
    assert json.loads(written["Properties"]) == {"amount": 42.5, "items": ["sku-1", "sku-2"], "note": 'naïve "quoted"'}
    assert (other["IsBot"], other["Suspicious"], other["Browser"], other["Properties"]) == (1, 0, None, None)
    assert json.loads(other["FraudReasons"]) == []


def segment_row(n: int) -> AnalyticsRow:
    """`row(n)` with every field the Segment-compatible API brings."""
    return row(
        n,
        anonymous_id="anon-1",
        name="Signed Up",
        group_id="g-1",
        previous_id="p-1",
        traits={"plan": "pro"},
        context={"library": {"name": "analytics-python"}},
        original_timestamp=datetime(2026, 3, 1, 9, 59, 58, 500_000, tzinfo=UTC),
        sent_at=datetime(2026, 3, 1, 10, 0, 0, tzinfo=timezone(timedelta(hours=1))),
    )


async def test_the_segment_fields_read_back_in_their_columns(store: EmbeddedAnalyticsStore, path: Path) -> None:
    await store.write([segment_row(1)])

    [written] = read_rows(path)

    assert {name: written[name] for name in SEGMENT_COLUMNS} == {
        "AnonymousId": "anon-1",
        "Name": "Signed Up",
        "GroupId": "g-1",
        "PreviousId": "p-1",
        "Traits": '{"plan":"pro"}',
        "Context": '{"library":{"name":"analytics-python"}}',
        "OriginalTimestamp": "2026-03-01T09:59:58.500000Z",
        "SentAt": "2026-03-01T09:00:00.000000Z",
    }


async def test_a_file_made_before_the_segment_columns_gains_them_keeping_its_rows(path: Path) -> None:
    # GIVEN a file with today's key but without the Segment columns, holding one row
    columns = ", ".join(f"{name} {'REAL' if kind == 'real' else 'TEXT'}" for name, kind in OLD_COLUMNS)
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute(f"CREATE TABLE {ANALYTICS_TABLE} ({columns}, AnalyticsAt TEXT NOT NULL)")
        connection.execute(
            f"INSERT INTO {ANALYTICS_TABLE} (EventId, TenantId, EventType, StoredAt, AnalyticsAt)"
            " VALUES ('old-1', 'acme', 'purchase', '2026-03-01T10:05:00.000000Z', '2026-03-01T15:30:00.000000Z')"
        )
        connection.commit()

    # WHEN it is opened and a row with the Segment fields is written
    store = EmbeddedAnalyticsStore(path, clock=ARRIVED.timestamp)
    try:
        await store.write([segment_row(2)])
    finally:
        await store.close()

    # THEN the old row is there with the new columns empty, and the new row has them filled
    rows = {found["EventId"]: found for found in read_rows(path)}
    assert set(rows) == {"old-1", str(uuid.UUID(int=2))}
    assert all(rows["old-1"][name] is None for name in SEGMENT_COLUMNS)
    assert rows[str(uuid.UUID(int=2))]["Name"] == "Signed Up"

    # AND opening it again changes nothing
    again = EmbeddedAnalyticsStore(path, clock=ARRIVED.timestamp)
    try:
        assert len(await again.event_keys(HOUR_10, HOUR_10 + timedelta(hours=1))) == 2
    finally:
        await again.close()


async def test_dynamic_columns_can_be_queried_with_sqlite_json_functions(
    store: EmbeddedAnalyticsStore, path: Path
) -> None:
    await store.write([row(1)])

    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        amount, codes = connection.execute(
            "SELECT json_extract(Properties, '$.amount'),"
            " (SELECT group_concat(value, ',') FROM json_each(FraudReasons)) FROM events"
        ).fetchone()
    finally:
        connection.close()

    assert amount == 42.5
    assert codes == "VELOCITY_IP_MINUTE,MANY_USERS_PER_IP"


def at(hour: int, minute: int = 0, second: int = 0, microsecond: int = 0) -> datetime:
    return datetime(2026, 3, 1, hour, minute, second, microsecond, tzinfo=UTC)


@pytest.fixture
async def spread(store: EmbeddedAnalyticsStore) -> dict[str, datetime]:
    """Rows stored (`StoredAt`) on and around hour boundaries, all received at 10:00."""
    stored = {
        "10:00 sharp": at(10),
        "10:59:59.999999": at(10, 59, 59, 999_999),
        "11:30": at(11, 30),
        "12:00 sharp": at(12),
        "13:15": at(13, 15),
    }
    await store.write([row(n, stored_at=when) for n, when in enumerate(stored.values(), 1)])
    return stored


def ids(*numbers: int) -> set[tuple[str, str]]:
    """The (tenantId, eventId) keys of `row(n)` for each n."""
    return {("acme", str(uuid.UUID(int=n))) for n in numbers}


async def test_hourly_counts_are_keyed_by_whole_hours_of_stored_at(
    store: EmbeddedAnalyticsStore, spread: dict[str, datetime]
) -> None:
    counts = await store.hourly_counts(at(9), at(14))

    assert counts == {at(10): 2, at(11): 1, at(12): 1, at(13): 1}
    for hour in counts:
        assert hour.utcoffset() == timedelta(0)
        assert (hour.minute, hour.second, hour.microsecond) == (0, 0, 0)


async def test_history_windows_are_half_open(store: EmbeddedAnalyticsStore, spread: dict[str, datetime]) -> None:
    # [10:00, 12:00): the row at 10:00 sharp is in, the one at 12:00 sharp is out
    assert await store.hourly_counts(at(10), at(12)) == {at(10): 2, at(11): 1}
    assert await store.event_keys(at(10), at(12)) == ids(1, 2, 3)

    # A window cut in the middle of hours counts only what is inside, under the whole hour's key
    assert await store.hourly_counts(at(10, 30), at(13)) == {at(10): 1, at(11): 1, at(12): 1}
    assert await store.event_keys(at(10, 30), at(13)) == ids(2, 3, 4)

    # One microsecond either side of a row decides whether it is in
    assert await store.event_keys(at(12), at(12, 0, 0, 1)) == ids(4)
    assert await store.event_keys(at(11, 59, 59, 999_999), at(12)) == set()

    # An empty window, and one with nothing stored
    assert await store.hourly_counts(at(11), at(11)) == {}
    assert await store.event_keys(at(20), at(21)) == set()


async def test_history_is_read_by_stored_at_not_by_when_the_event_was_received(
    store: EmbeddedAnalyticsStore, spread: dict[str, datetime]
) -> None:
    # All rows were received at 10:00 (and arrived here at 15:30); only StoredAt decides the hour
    assert await store.hourly_counts(at(13), at(14)) == {at(13): 1}
    assert await store.event_keys(at(15), at(16)) == set()


async def test_a_window_given_in_another_zone_means_the_same_instants(
    store: EmbeddedAnalyticsStore, spread: dict[str, datetime]
) -> None:
    paris = timezone(timedelta(hours=1))
    start, end = datetime(2026, 3, 1, 11, tzinfo=paris), datetime(2026, 3, 1, 13, tzinfo=paris)  # 10:00-12:00 UTC

    assert await store.hourly_counts(start, end) == {at(10): 2, at(11): 1}
    assert await store.event_keys(start, end) == ids(1, 2, 3)


async def test_an_empty_store_has_no_history(store: EmbeddedAnalyticsStore) -> None:
    await store.write([])

    assert await store.hourly_counts(at(0), at(23)) == {}
    assert await store.event_keys(at(0), at(23)) == set()


@contextlib.contextmanager
def write_lock_held_by_another_connection(path: Path) -> Iterator[None]:
    """Another connection takes the database's write lock and keeps it until the block ends."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


async def test_a_write_while_the_file_is_locked_raises_the_sink_error_and_the_store_recovers(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The busy timeout is how long a write waits for another writer's lock before failing;
    # shortened here so the test does not wait the production 5 s.
    monkeypatch.setattr(sqlite_worker, "BUSY_TIMEOUT_SECONDS", 0.2)
    store = EmbeddedAnalyticsStore(path)
    try:
        # GIVEN a working store
        await store.write([row(1)])

        # WHEN another connection holds the write lock for longer than the busy timeout
        with write_lock_held_by_another_connection(path), pytest.raises(AnalyticsSinkError, match="locked") as error:
            await store.write([row(2)])

        # THEN the write failed as the port's error (the host retries the batch) ...
        assert isinstance(error.value.__cause__, sqlite3.OperationalError)
        # ... left nothing behind, and the same store writes once the lock is gone
        assert await store.event_keys(at(0), at(23)) == ids(1)
        await store.write([row(2)])
        assert await store.event_keys(at(0), at(23)) == ids(1, 2)
    finally:
        await store.close()


async def test_a_closed_store_refuses_writes_with_the_sink_error(path: Path) -> None:
    # GIVEN a store that wrote a row and was closed (twice: harmless)
    store = EmbeddedAnalyticsStore(path)
    await store.write([row(1)])
    await store.close()
    await store.close()

    try:
        # WHEN something still writes to it (a batch finishing during shutdown)
        with pytest.raises(AnalyticsSinkError):
            await store.write([row(2)])
        with pytest.raises(AnalyticsSinkError):
            await store.check()
    finally:
        await store.close()

    # THEN nothing was written behind the closed store's back
    assert [found["EventId"] for found in read_rows(path)] == [str(uuid.UUID(int=1))]


def make_folder_a_file(tmp_path: Path) -> Path:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the data folder should be")
    return blocked / "analytics.sqlite3"


def make_file_a_folder(tmp_path: Path) -> Path:
    target = tmp_path / "analytics.sqlite3"
    target.mkdir()
    return target


def make_file_not_a_database(tmp_path: Path) -> Path:
    target = tmp_path / "analytics.sqlite3"
    target.write_bytes(b"this is not an SQLite database, but it is long enough to have a header" * 10)
    return target


@pytest.mark.parametrize("unusable", [make_folder_a_file, make_file_a_folder, make_file_not_a_database])
async def test_an_unusable_file_raises_the_sink_error(tmp_path: Path, unusable: Callable[[Path], Path]) -> None:
    store = EmbeddedAnalyticsStore(unusable(tmp_path))
    try:
        with pytest.raises(AnalyticsSinkError) as error:
            await store.write([row(1)])
        with pytest.raises(AnalyticsSinkError):
            await store.check()
        with pytest.raises(AnalyticsSinkError):
            await store.hourly_counts(at(0), at(23))
    finally:
        await store.close()

    assert isinstance(error.value.__cause__, sqlite3.Error | OSError)
    assert str(store.path) in str(error.value)


async def test_a_store_that_could_not_open_tries_again_on_the_next_call(tmp_path: Path) -> None:
    path = make_folder_a_file(tmp_path)
    store = EmbeddedAnalyticsStore(path)
    try:
        with pytest.raises(AnalyticsSinkError):
            await store.write([row(1)])

        path.parent.unlink()  # the operator fixes the folder

        await store.write([row(1)])
        assert await store.event_keys(at(0), at(23)) == ids(1)
    finally:
        await store.close()


async def test_another_connection_reads_while_the_store_writes(store: EmbeddedAnalyticsStore, path: Path) -> None:
    # GIVEN a reader (read-only, like `cloudscale query`) in the middle of a read transaction
    await store.write([row(1)])
    reader = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM events").fetchone() == (1,)

        # WHEN the store writes meanwhile
        await asyncio.wait_for(store.write([row(2), row(3)]), timeout=5)

        # THEN the write did not wait for the reader, and the reader kept its consistent snapshot
        assert reader.execute("SELECT count(*) FROM events").fetchone() == (1,)
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM events").fetchone() == (3,)
    finally:
        reader.close()


READ_COUNT = textwrap.dedent(
    """
    import sqlite3, sys
    connection = sqlite3.connect(sys.argv[1] + "?mode=ro", uri=True, timeout=1)
    print(connection.execute("SELECT count(*) FROM events").fetchone()[0])
    """
)


async def count_in_another_process(path: Path) -> int:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", READ_COUNT, path.as_uri()],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


async def test_another_process_reads_while_the_store_keeps_writing(store: EmbeddedAnalyticsStore, path: Path) -> None:
    # GIVEN a store writing batch after batch
    await store.write([row(1)])
    batches = 40

    async def keep_writing() -> None:
        for batch in range(batches):
            await store.write([row(1000 + batch * 5 + k) for k in range(5)])

    # WHEN another process reads the file meanwhile
    writing = asyncio.create_task(keep_writing())
    seen_during = await count_in_another_process(path)
    await writing

    # THEN it read a committed state (whole batches), and sees everything afterwards
    assert 1 <= seen_during <= 1 + batches * 5
    assert seen_during % 5 == 1  # whole batches only
    assert await count_in_another_process(path) == 1 + batches * 5
