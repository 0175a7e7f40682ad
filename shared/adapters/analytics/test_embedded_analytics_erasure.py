"""The embedded analytics store erases a data subject's rows, bytes included, and expires old rows."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import shared.adapters.sqlite.secure_delete as secure_delete
from shared.adapters.analytics.embedded_analytics import RETENTION_CHECK_SECONDS, EmbeddedAnalyticsStore
from shared.adapters.analytics.test_embedded_analytics import read_rows, row
from shared.domain.privacy import Subject
from shared.ports import AnalyticsErasure

ALICE = Subject("acme", "userId", "user-1")


def keys(path: Path) -> set[tuple[str, str | None, str | None]]:
    return {(found["TenantId"], found["UserId"], found["AnonymousId"]) for found in read_rows(path)}


async def test_erasing_a_user_removes_only_that_users_rows_and_is_idempotent(
    store: EmbeddedAnalyticsStore, path: Path
) -> None:
    # GIVEN rows of user-1 (two events), of user-2, of user-1 in another tenant, and of an
    # anonymous visitor whose anonymousId is user-1's userId
    await store.write(
        [
            row(1),
            row(2, user_id="user-1"),
            row(3, user_id="user-2"),
            row(4, tenant_id="globex", user_id="user-1"),
            row(5, user_id=None, anonymous_id="user-1"),
        ]
    )
    assert await store.count_subject_rows(ALICE) == 2

    # WHEN user-1 of acme is erased, twice (a runner that resumes repeats the step)
    first = await store.erase_subject_rows(ALICE)
    second = await store.erase_subject_rows(ALICE)

    # THEN both of their rows went the first time, nothing the second, and every other row stayed
    assert (first, second) == (AnalyticsErasure(removed=2), AnalyticsErasure(removed=0))
    assert await store.count_subject_rows(ALICE) == 0
    assert keys(path) == {("acme", "user-2", None), ("globex", "user-1", None), ("acme", None, "user-1")}


async def test_erasing_an_anonymous_id_removes_its_rows_by_the_anonymous_id_column(
    store: EmbeddedAnalyticsStore, path: Path
) -> None:
    visitor = Subject("acme", "anonymousId", "anon-7")
    await store.write([row(1, user_id=None, anonymous_id="anon-7"), row(2, anonymous_id="anon-7"), row(3)])
    assert await store.count_subject_rows(visitor) == 2

    assert await store.erase_subject_rows(visitor) == AnalyticsErasure(removed=2)

    assert keys(path) == {("acme", "user-3", None)}


def file_bytes(path: Path) -> dict[str, bytes]:
    """Every file of the store (the database, its -wal, -shm and lock files) by name."""
    return {found.name: found.read_bytes() for found in path.parent.glob(path.name + "*")}


async def test_an_erased_rows_bytes_are_gone_from_the_file_and_its_log(
    store: EmbeddedAnalyticsStore, path: Path
) -> None:
    # GIVEN a row of user-1 whose properties carry a unique marker, among other users' rows,
    # part of it checkpointed into the database file and part still in the log
    marker = f"marker-{uuid.uuid4().hex}"
    await store.write([row(n) for n in range(10, 40)])
    await store.write([row(1, properties={"secret": marker}), row(2, user_id="user-1")])
    await store.write([row(n) for n in range(40, 60)])
    assert any(marker.encode() in content for content in file_bytes(path).values())
    with contextlib.closing(sqlite3.connect(path)) as other:
        other.execute("PRAGMA wal_checkpoint(PASSIVE)")
    await store.write([row(n) for n in range(60, 70)])

    # WHEN user-1 is erased
    assert await store.erase_subject_rows(ALICE) == AnalyticsErasure(removed=2)

    # THEN no file holds the marker any more: not the database (secure delete overwrote the
    # row), not the log (truncated), and the other rows are all there
    holding = [name for name, content in file_bytes(path).items() if marker.encode() in content]
    assert holding == []
    assert len(read_rows(path)) == 60
    # Some SQLite builds (Debian's) turn secure delete on by default, others (python.org's) do
    # not: the store turns it on itself, whatever the build.
    setting = await store._run("read", lambda connection: connection.execute("PRAGMA secure_delete").fetchone())
    assert setting == (1,)
    assert not (path.parent / (path.name + "-wal")).exists() or (path.parent / (path.name + "-wal")).stat().st_size == 0


@contextlib.contextmanager
def reader_on_a_snapshot(path: Path) -> Iterator[None]:
    """A read-only connection (like `cloudscale query`) in the middle of a read transaction."""
    reader = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()
        yield
    finally:
        reader.close()


async def test_a_reader_blocking_the_log_truncation_is_logged_not_raised_and_the_next_erasure_truncates(
    store: EmbeddedAnalyticsStore, path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(secure_delete, "CHECKPOINT_ATTEMPTS", 1)
    monkeypatch.setattr(secure_delete, "CHECKPOINT_BUSY_MS", 50)
    marker = f"marker-{uuid.uuid4().hex}"
    await store.write([row(1, properties={"secret": marker}), row(2)])

    # WHEN user-1 is erased while a reader holds a snapshot from before
    with reader_on_a_snapshot(path), caplog.at_level(logging.WARNING, logger=secure_delete.__name__):
        erased = await store.erase_subject_rows(ALICE)

    # THEN the erasure succeeded, said why the log is not truncated yet, and the log still has the row
    assert erased == AnalyticsErasure(removed=1)
    assert "could not be truncated" in caplog.text
    assert await store.count_subject_rows(ALICE) == 0
    assert marker.encode() in file_bytes(path)[path.name + "-wal"]

    # AND the next erasure (even one that finds nothing) truncates it once the reader is gone
    assert await store.erase_subject_rows(ALICE) == AnalyticsErasure(removed=0)
    assert not any(marker.encode() in content for content in file_bytes(path).values())


DAY = timedelta(days=1)
HALF_HOUR = timedelta(minutes=30)


def users(path: Path) -> set[str | None]:
    return {found["UserId"] for found in read_rows(path)}


class Clock:
    """A settable clock for the store (seconds since the epoch)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()


async def test_retention_drops_old_rows_on_open_and_at_most_hourly_on_write(path: Path) -> None:
    # GIVEN rows stored 40 days, 30 days less half an hour, and 1 day before now, written by a
    # store that keeps everything
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    keeper = EmbeddedAnalyticsStore(path, clock=Clock(now))
    try:
        await keeper.write([row(1, stored_at=now - 40 * DAY), row(2, stored_at=now - 30 * DAY + HALF_HOUR)])
        await keeper.write([row(3, stored_at=now - DAY)])
    finally:
        await keeper.close()
    assert len(read_rows(path)) == 3

    # WHEN a store with a 30-day retention opens the file (to read, even)
    clock = Clock(now)
    store = EmbeddedAnalyticsStore(path, clock=clock, retention_days=30)
    try:
        assert await store.count_subject_rows(Subject("acme", "userId", "user-1")) == 0

        # THEN the 40-day-old row is gone, the others stay
        assert users(path) == {"user-2", "user-3"}

        # WHEN row 2 turns 30 days old, but the last check is less than an hour ago
        clock.now = now + timedelta(seconds=RETENTION_CHECK_SECONDS - 1)
        await store.write([row(4, stored_at=clock.now)])
        # THEN a write does not look again yet
        assert users(path) == {"user-2", "user-3", "user-4"}

        # WHEN the hour is up, the next write drops it
        clock.now = now + timedelta(seconds=RETENTION_CHECK_SECONDS)
        await store.write([row(5, stored_at=clock.now)])
        assert users(path) == {"user-3", "user-4", "user-5"}
    finally:
        await store.close()


async def test_without_retention_old_rows_stay(path: Path) -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    store = EmbeddedAnalyticsStore(path, clock=Clock(now), retention_days=None)
    try:
        await store.write([row(1, stored_at=now - 400 * DAY)])
        await store.write([row(2, stored_at=now)])
    finally:
        await store.close()
    again = EmbeddedAnalyticsStore(path, clock=Clock(now + 2 * DAY))
    try:
        await again.write([row(3)])
    finally:
        await again.close()
    assert len(read_rows(path)) == 3


async def test_expired_rows_bytes_are_gone_too(path: Path) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    keeper = EmbeddedAnalyticsStore(path, clock=Clock(now))
    try:
        await keeper.write([row(1, stored_at=now - 40 * DAY, properties={"secret": marker})])
        await keeper.write([row(n, stored_at=now) for n in range(2, 20)])
    finally:
        await keeper.close()

    store = EmbeddedAnalyticsStore(path, clock=Clock(now), retention_days=30)
    try:
        await store.check()
        assert not any(marker.encode() in content for content in file_bytes(path).values())
        assert len(read_rows(path)) == 18
    finally:
        await store.close()
