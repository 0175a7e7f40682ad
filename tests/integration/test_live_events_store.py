"""The embedded live-event log on real SQLite files: what it keeps, in which order, and what it never does.

GIVEN a log over a file in tmp_path WHEN events are recorded and flushed THEN the file holds the
newest `kept` of each outcome, ordered by `seq` across every process writing it, without
secrets; a file that cannot be written never makes `record` (or ingest) fail.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared.adapters.live_events.embedded import LIVE_EVENTS_FILE, EmbeddedLiveEvents
from shared.domain.events import Event
from shared.domain.live_events import LiveEvent, LiveEventFilter, LiveEventReason

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
WRITE_KEY = "cs_bk_" + "k" * 48


def accepted(n: int, *, tenant: str = "acme", kind: str = "page_view", user: str | None = None) -> LiveEvent:
    event = Event.model_validate(
        {
            "eventType": kind,
            "tenantId": tenant,
            "eventId": f"e-{n}",
            "userId": user or f"user-{n}",
            "timestamp": T0.isoformat(),
        }
    )
    return LiveEvent(
        at=T0 + timedelta(milliseconds=n),
        outcome="accepted",
        api="events",
        status=202,
        tenant_id=tenant,
        event_type=kind,
        event_id=f"e-{n}",
        event=event,
    )


def rejected(n: int, item: dict[str, object] | None = None, *, tenant: str | None = "acme") -> LiveEvent:
    return LiveEvent(
        at=T0 + timedelta(milliseconds=n),
        outcome="rejected",
        api="events",
        status=202,
        tenant_id=tenant,
        event_type="click",
        reasons=(LiveEventReason("missing", "Field required", "eventType"),),
        event=item if item is not None else {"tenantId": tenant, "n": n},
    )


@pytest.fixture
async def open_log(tmp_path: Path) -> AsyncIterator[Callable[..., EmbeddedLiveEvents]]:
    opened: list[EmbeddedLiveEvents] = []

    def make(kept: int = 100, path: Path | None = None) -> EmbeddedLiveEvents:
        log = EmbeddedLiveEvents(path or tmp_path / LIVE_EVENTS_FILE, kept)
        opened.append(log)
        return log

    yield make
    for log in opened:
        await log.close()


async def test_each_outcome_is_trimmed_to_its_newest_kept(open_log: Callable[..., EmbeddedLiveEvents]) -> None:
    log = open_log(kept=3)
    log.record([accepted(n) for n in range(5)] + [rejected(n) for n in range(5, 9)])
    await log.flush()
    log.record([accepted(9)])
    await log.flush()

    good = await log.latest(10, LiveEventFilter(outcome="accepted"))
    bad = await log.latest(10, LiveEventFilter(outcome="rejected"))
    assert [event.event_id for event in good] == ["e-9", "e-4", "e-3"]
    assert [event.document() for event in bad] == [{"tenantId": "acme", "n": n} for n in (8, 7, 6)]


async def test_what_is_read_back_is_what_was_recorded(open_log: Callable[..., EmbeddedLiveEvents]) -> None:
    log = open_log()
    kept = [accepted(1), rejected(2)]
    log.record(kept)
    await log.flush()
    read = await log.after(0, 10)
    assert [event.to_dict() | {"seq": 0} for event in read] == [event.to_dict() for event in kept]
    assert [event.seq for event in read] == [1, 2]
    assert await log.last_seq() == 2


async def test_filters_by_tenant_type_and_outcome(open_log: Callable[..., EmbeddedLiveEvents]) -> None:
    log = open_log()
    log.record([accepted(1, tenant="acme"), accepted(2, tenant="globex", kind="buy"), rejected(3, tenant="globex")])
    await log.flush()
    globex = await log.after(0, 10, LiveEventFilter(tenant_id="globex"))
    assert [event.seq for event in globex] == [2, 3]
    assert [event.seq for event in await log.latest(10, LiveEventFilter(event_type="buy"))] == [2]
    assert [event.seq for event in await log.after(1, 10, LiveEventFilter(outcome="rejected"))] == [3]


_OTHER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from shared.adapters.live_events.embedded import EmbeddedLiveEvents
    from shared.domain.live_events import LiveEvent

    async def main() -> None:
        log = EmbeddedLiveEvents(Path(sys.argv[1]), 100)
        now = datetime.now(UTC)
        log.record([LiveEvent(at=now, outcome="accepted", api="segment", status=200, event_id=sys.argv[2])])
        await log.close()

    asyncio.run(main())
    """
)


def _bytes_of_files(folder: Path) -> bytes:
    """Every byte of the folder's files (the database, its -wal and -shm)."""
    return b"".join(path.read_bytes() for path in folder.iterdir() if path.is_file())


def _record_in_another_process(path: Path, event_id: str) -> None:
    subprocess.run([sys.executable, "-c", _OTHER_PROCESS, str(path), event_id], cwd=REPO, check=True, timeout=60)


async def test_seq_orders_the_events_of_two_processes_writing_one_file(
    open_log: Callable[..., EmbeddedLiveEvents], tmp_path: Path
) -> None:
    path = tmp_path / LIVE_EVENTS_FILE
    log = open_log(path=path)
    log.record([accepted(1)])
    await log.flush()
    _record_in_another_process(path, "theirs-1")
    log.record([accepted(2)])
    await log.flush()
    _record_in_another_process(path, "theirs-2")

    stream = await log.after(0, 10)
    assert [event.event_id for event in stream] == ["e-1", "theirs-1", "e-2", "theirs-2"]
    assert [event.seq for event in stream] == sorted({event.seq for event in stream})
    assert [event.api for event in stream] == ["events", "segment", "events", "segment"]


async def test_secrets_are_never_written_to_the_file(
    open_log: Callable[..., EmbeddedLiveEvents], tmp_path: Path
) -> None:
    log = open_log()
    log.record([rejected(1, {"writeKey": WRITE_KEY, "write_key": WRITE_KEY, "eventType": "click"})])
    await log.close()
    assert WRITE_KEY.encode() not in _bytes_of_files(tmp_path)
    reader = open_log()
    [event] = await reader.latest(1)
    assert event.document() == {"eventType": "click"}


async def test_a_segment_messages_address_is_kept_as_its_network(open_log: Callable[..., EmbeddedLiveEvents]) -> None:
    log = open_log()
    log.record([rejected(1, {"type": "track", "context": {"ip": "203.0.113.77", "locale": "en"}})])
    await log.flush()
    [event] = await log.latest(1)
    assert event.document() == {"type": "track", "context": {"ip": "203.0.113.0/24", "locale": "en"}}


async def test_reset_forgets_every_kept_event_and_seq_keeps_increasing(
    open_log: Callable[..., EmbeddedLiveEvents],
) -> None:
    log = open_log()
    log.record([accepted(1), rejected(2)])
    await log.flush()
    log.record([accepted(3)])  # pending: forgotten too
    assert await log.reset() == 2
    await log.flush()
    assert await log.latest(10) == []
    log.record([accepted(4)])
    await log.flush()
    # A follower that read up to seq 2 sees the new event: seq is never reused.
    assert [event.seq for event in await log.after(2, 10)] == [3]


async def test_what_is_recorded_is_stored_by_the_scheduled_flush(open_log: Callable[..., EmbeddedLiveEvents]) -> None:
    log = open_log()
    reader = open_log()
    log.record([accepted(1)])  # no flush called: the log schedules one
    deadline = time.monotonic() + 5
    while not (stored := await reader.latest(10)):
        assert time.monotonic() < deadline, "the recorded event was never stored"
        await asyncio.sleep(0.01)
    assert [event.event_id for event in stored] == ["e-1"]


async def test_a_flush_scheduled_on_a_loop_that_ended_does_not_stop_later_flushes(tmp_path: Path) -> None:
    log = EmbeddedLiveEvents(tmp_path / LIVE_EVENTS_FILE, 10)

    async def record_and_leave() -> None:
        log.record([accepted(1)])  # schedules a flush on this loop, which ends first

    await asyncio.to_thread(asyncio.run, record_and_leave())
    log.record([accepted(2)])
    deadline = time.monotonic() + 5
    while not (stored := await log.latest(10)):
        assert time.monotonic() < deadline, "nothing recorded after the first loop ended was ever stored"
        await asyncio.sleep(0.01)
    await log.close()
    assert [event.event_id for event in stored] == ["e-2", "e-1"]


async def test_close_stores_what_is_pending(open_log: Callable[..., EmbeddedLiveEvents], tmp_path: Path) -> None:
    log = open_log()
    log.record([accepted(1), rejected(2)])
    await log.close()
    log.record([accepted(3)])  # after close: ignored, never raises
    assert [event.event_id for event in await open_log().after(0, 10)] == ["e-1", None]


def _deep(levels: int) -> dict[str, object]:
    item: dict[str, object] = {}
    inner = item
    for _ in range(levels):
        inner["a"] = {}
        inner = inner["a"]  # type: ignore[assignment]
    return item


async def test_an_item_too_deep_to_serialise_is_kept_without_its_body_and_its_neighbours_are_kept(
    open_log: Callable[..., EmbeddedLiveEvents],
) -> None:
    # A rejected item may nest as deep as the JSON parser takes (1024), deeper than the encoder
    # goes (255): it failed the whole flush, and every event in it was lost.
    log = open_log()
    log.record([accepted(1), rejected(2, {"properties": _deep(300)}), rejected(3)])
    await log.flush()
    stream = await log.after(0, 10)
    assert [(event.event_id, event.outcome) for event in stream] == [
        ("e-1", "accepted"),
        (None, "rejected"),
        (None, "rejected"),
    ]
    assert stream[1].event is None
    assert stream[1].reasons == (LiveEventReason("missing", "Field required", "eventType"),)
    assert stream[2].document() == {"tenantId": "acme", "n": 3}


async def test_a_file_that_cannot_be_written_never_makes_record_fail(
    open_log: Callable[..., EmbeddedLiveEvents], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    log = open_log(path=blocker / LIVE_EVENTS_FILE)
    with caplog.at_level(logging.WARNING):
        for n in range(3):
            log.record([accepted(n)])  # never raises
            await log._flush_logged()
    warnings = [record for record in caplog.records if "live events not stored" in record.getMessage()]
    assert len(warnings) == 1, "one warning until a flush succeeds, not one per flush"


async def test_a_damaged_file_never_makes_record_fail(
    open_log: Callable[..., EmbeddedLiveEvents], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / LIVE_EVENTS_FILE
    path.write_bytes(b"this is not a SQLite database" * 100)
    log = open_log(path=path)
    with caplog.at_level(logging.WARNING):
        log.record([accepted(1)])
        await log.close()
    assert any("live events not stored" in record.getMessage() for record in caplog.records)


async def test_a_full_file_never_makes_record_fail(
    open_log: Callable[..., EmbeddedLiveEvents], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = open_log()
    log.record([accepted(1)])
    await log.flush()
    # SQLite answers "database or disk is full" once a file reaches its page limit.
    await log._worker.run(lambda c: c.execute("PRAGMA max_page_count = 1").fetchall())
    with caplog.at_level(logging.WARNING):
        log.record([rejected(n, {"padding": "x" * 5000}) for n in range(50)])
        await log._flush_logged()
    assert any("full" in record.getMessage() for record in caplog.records)
    assert [event.event_id for event in await log.latest(10)] == ["e-1"]


async def test_erase_subject_removes_the_subjects_kept_events_and_their_bytes(
    open_log: Callable[..., EmbeddedLiveEvents], tmp_path: Path
) -> None:
    log = open_log()
    log.record(
        [
            accepted(1, user="erased-person"),
            accepted(2),
            rejected(3, {"userId": "erased-person", "eventType": 5}),
            rejected(4, {"userId": 7, "anonymousId": "erased-person"}),
            rejected(5, {"userId": "erased-person"}, tenant=None),  # no tenant known: erased too
            accepted(6, tenant="globex", user="erased-person"),  # the same identifier in another tenant
        ]
    )
    await log.flush()
    assert await log.erase_subject("acme", "userId", "erased-person") == 3
    assert [event.event_id for event in await log.after(0, 10)] == ["e-2", None, "e-6"]
    assert await log.erase_subject("acme", "anonymousId", "erased-person") == 1
    assert await log.erase_subject("acme", "userId", "7") == 0  # already gone with its anonymousId
    assert await log.erase_subject("globex", "userId", "erased-person") == 1
    assert [event.event_id for event in await log.after(0, 10)] == ["e-2"]
    await log.close()
    # secure_delete zeroes the rows and the log is truncated: no copy is left in any file.
    assert b"erased-person" not in _bytes_of_files(tmp_path)


async def test_a_numeric_identifier_is_erased_by_its_text(open_log: Callable[..., EmbeddedLiveEvents]) -> None:
    log = open_log()
    log.record([rejected(1, {"userId": 12345})])
    await log.flush()
    assert await log.erase_subject("acme", "userId", "12345") == 1


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("203.0.113.76/31", "203.0.113.0/24"),
        ("203.0.113.0/30", "203.0.113.0/24"),
        ("2001:db8:1:2::4/127", "2001:db8:1::/48"),
        ("203.0.0.0/16", "203.0.0.0/16"),
    ],
)
async def test_an_address_sent_as_a_narrow_network_is_kept_no_narrower_than_a_stored_events(
    open_log: Callable[..., EmbeddedLiveEvents], sent: str, kept: str
) -> None:
    # A network narrower than the /24 (/48) a stored event holds names a client nearly as well as its address.
    log = open_log()
    log.record([rejected(1, {"type": "track", "context": {"ip": sent}})])
    await log.flush()
    [event] = await log.latest(1)
    assert event.document() == {"type": "track", "context": {"ip": kept}}
