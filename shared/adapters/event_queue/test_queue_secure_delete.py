"""Removed dead letters leave no bytes behind in the queue file or its write-ahead log.

Read as raw bytes, the way anyone holding a copy of the data folder could read them: a
SQLite DELETE alone only unlinks the row, and WAL mode keeps older copies of each page in
the -wal file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.dead_letters.embedded import EmbeddedDeadLetterBrowser
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.domain.envelope import QueueMessage


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[EmbeddedQueue]:
    queue = EmbeddedQueue(tmp_path / "queue.sqlite3", max_delivery_count=1)
    yield queue
    queue.close()


def on_disk(queue: EmbeddedQueue) -> bytes:
    """The queue file and its -wal file, as bytes."""
    wal = queue.path.with_name(queue.path.name + "-wal")
    return queue.path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def carrying(marker: bytes, *, size: int) -> QueueMessage:
    """A message whose body holds `marker` at both ends, padded to `size` bytes: past a page, the
    end lies on an overflow page, which a delete frees rather than rewrites."""
    body = b'{"event": {"note": "' + marker + b'"}, "pad": "' + b"x" * size + b'", "end": "' + marker + b'"}'
    return QueueMessage(message_id=f"id-{uuid.uuid4().hex}", body=body)


async def dead_letter_all(queue: EmbeddedQueue) -> None:
    """Deliver every waiting message once, then let `max_delivery_count` dead-letter it."""
    for locked in await queue.receive(100):
        await queue.abandon(locked.lock_token)
    assert await queue.receive(100) == []


async def remove_all_but_one(queue: EmbeddedQueue) -> tuple[list[bytes], bytes]:
    """Dead letters with unique markers: some checkpointed into the queue file, some only in the
    -wal file, small bodies and ones spilling onto overflow pages; all but one removed through
    the browser. Returns the removed ones' markers and the kept one's."""
    in_file = [uuid.uuid4().hex.encode() for _ in range(2)]
    in_log = [uuid.uuid4().hex.encode() for _ in range(2)]
    kept = uuid.uuid4().hex.encode()
    await queue.send([carrying(in_file[0], size=100), carrying(in_file[1], size=9_000), carrying(kept, size=100)])
    await dead_letter_all(queue)
    assert await queue.truncate_log()
    await queue.send([carrying(in_log[0], size=100), carrying(in_log[1], size=9_000)])
    await dead_letter_all(queue)
    disk = on_disk(queue)
    assert all(marker in disk for marker in [*in_file, *in_log, kept]), "the test would prove nothing"

    browser = EmbeddedDeadLetterBrowser(queue)
    erased = [d.id for d in await browser.list(10) if kept not in d.body]
    assert await browser.remove(erased) == 4
    [left] = await browser.list(10)
    assert kept in left.body
    return [*in_file, *in_log], kept


async def test_a_removed_dead_letter_is_gone_from_the_file_and_its_log(queue: EmbeddedQueue) -> None:
    removed, kept = await remove_all_but_one(queue)

    disk = on_disk(queue)
    for marker in removed:
        assert marker not in disk, f"marker {marker!r} is still on disk"
    assert kept in disk


async def test_without_secure_delete_the_removed_bytes_would_stay(queue: EmbeddedQueue) -> None:
    # The control: SQLite builds differ in their default (Debian's turns it on at compile
    # time, python.org's and Homebrew's do not), so the queue sets it itself; switched off,
    # the test above would fail.
    await queue._worker.run(lambda c: c.execute("PRAGMA secure_delete=OFF"))

    removed, _ = await remove_all_but_one(queue)

    disk = on_disk(queue)
    assert any(marker in disk for marker in removed)


async def test_the_queue_file_is_opened_with_secure_delete(queue: EmbeddedQueue) -> None:
    assert await queue._worker.run(lambda c: c.execute("PRAGMA secure_delete").fetchone()[0]) == 1
