"""The embedded queue refuses a file that lost acknowledged messages, or is damaged, naming it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.adapters.event_queue.queue_integrity import QueueIntegrityError, mark_path
from shared.adapters.sqlite.worker import StoreFileError
from shared.domain.envelope import QueueMessage


def messages(*ids: str) -> list[QueueMessage]:
    return [QueueMessage(message_id=message_id, body=b"{}") for message_id in ids]


async def filled(path: Path, *ids: str) -> None:
    queue = EmbeddedQueue(path)
    try:
        await queue.send(messages(*ids))
    finally:
        queue.close()


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


async def test_a_new_queue_and_a_drained_one_open(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    await filled(path, "a", "b")
    queue = EmbeddedQueue(path)
    for received in await queue.receive(10):
        await queue.complete(received.lock_token)
    queue.close()
    # an empty queue that handed its messages out is not a lost one
    EmbeddedQueue(path).close()
    assert mark_path(path).read_text().strip() == "2"


async def test_an_emptied_queue_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    # GIVEN a queue that acknowledged two messages
    path = tmp_path / "queue.sqlite3"
    await filled(path, "a", "b")
    # WHEN its file is emptied (truncated to nothing)
    remove_database(path)
    path.write_bytes(b"")
    # THEN it will not open, and says which file, what was lost and what to do
    with pytest.raises(QueueIntegrityError, match="has lost acknowledged messages") as raised:
        EmbeddedQueue(path)
    assert str(path) in str(raised.value)
    assert str(mark_path(path)) in str(raised.value)


async def test_a_queue_file_rolled_back_to_an_older_copy_is_refused(tmp_path: Path) -> None:
    # GIVEN a copy of the queue taken after one message, and two more acknowledged since
    path = tmp_path / "queue.sqlite3"
    await filled(path, "a")
    EmbeddedQueue(path).close()  # checkpoint the WAL into the file
    old_copy = tmp_path / "old.sqlite3"
    shutil.copy(path, old_copy)
    await filled(path, "b", "c")
    # WHEN the old copy is put back
    remove_database(path)
    shutil.copy(old_copy, path)
    # THEN the queue refuses it
    with pytest.raises(QueueIntegrityError, match="message 3 was acknowledged"):
        EmbeddedQueue(path)


async def test_deleting_the_mark_accepts_the_loss(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    await filled(path, "a")
    remove_database(path)
    mark_path(path).unlink()
    EmbeddedQueue(path).close()


def test_a_damaged_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "queue.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreFileError, match="not a usable SQLite database") as raised:
        EmbeddedQueue(path)
    assert str(path) in str(raised.value)


def test_opening_while_another_process_sends_never_reads_a_healthy_queue_as_short(tmp_path: Path) -> None:
    import subprocess
    import sys

    sender = """
import asyncio, sys
from pathlib import Path
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.domain.envelope import QueueMessage
async def main() -> None:
    queue = EmbeddedQueue(Path(sys.argv[1]))
    for n in range(3000):
        await queue.send([QueueMessage(message_id=f"m-{n}", body=b"{}")])
    queue.close()
asyncio.run(main())
"""
    path = tmp_path / "queue.sqlite3"
    EmbeddedQueue(path).close()
    repo = Path(__file__).resolve().parents[3]
    process = subprocess.Popen([sys.executable, "-c", sender, str(path)], cwd=repo)
    refusals = 0
    try:
        for _ in range(300):
            if process.poll() is not None:
                break
            try:
                EmbeddedQueue(path).close()
            except QueueIntegrityError:
                refusals += 1
    finally:
        process.wait(timeout=60)
    assert process.returncode == 0
    assert refusals == 0
