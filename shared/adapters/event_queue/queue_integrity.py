"""Whether the embedded queue file still holds every message it acknowledged.

A 202 means the event's message was committed to `queue.sqlite3`. If that file is emptied,
replaced or rolled back (its write-ahead log cut short, a backup restored over it), SQLite
opens what is left as a healthy database, and a host would start with acknowledged events
silently gone. Two checks catch that at open:

- **a high-water mark beside the file** (`queue.sqlite3.acked`): after each committed send,
  the highest message sequence number the file has handed out is written there (atomically,
  by rename). Sequence numbers only grow (`AUTOINCREMENT`, kept in the file itself), so a
  file whose sequence is below the mark has lost committed messages. The mark is written
  after the commit is durable, so a crash can leave it behind the file, never ahead of it.
- **`PRAGMA quick_check`**: a file that is damaged, not only short, fails it.

Either way the queue refuses to open with `QueueIntegrityError`, naming the file and what to
do (docs/architecture.md, "Embedded queue"). Deleting the mark is how an operator who has
restored what can be restored, or accepts the loss, tells the queue to start again from what
the file holds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from pathlib import Path

from shared.adapters.sqlite.worker import StoreFileError

__all__ = [
    "QueueIntegrityError",
    "check_queue_file",
    "current_sequence",
    "mark_path",
    "record_high_water",
]


class QueueIntegrityError(StoreFileError):
    """The queue file is damaged or has lost acknowledged messages; the message says what to do."""


def mark_path(queue_file: Path) -> Path:
    """Where the high-water mark of `queue_file` is kept."""
    return queue_file.with_name(queue_file.name + ".acked")


def current_sequence(connection: sqlite3.Connection) -> int:
    """The highest message sequence number the file has handed out (0 for a new file)."""
    row = connection.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    return int(row[0]) if row else 0


def check_queue_file(connection: sqlite3.Connection, queue_file: Path) -> int:
    """Raise `QueueIntegrityError` unless the file is sound and holds every acknowledged message.

    Returns the file's current sequence number.
    """
    problems = [str(row[0]) for row in connection.execute("PRAGMA quick_check").fetchall()]
    if problems != ["ok"]:
        raise QueueIntegrityError(
            f"the queue file {queue_file} is damaged ({'; '.join(problems[:3])}). Stop every host, move it aside"
            f" (with its -wal and -shm files), restore it from a backup if you have one, and start again;"
            f" see docs/architecture.md, 'Embedded queue'."
        )
    # The mark first: it is written only after the commit it names, so a file read after it
    # has at least that sequence, even while another process is sending (the other order
    # could see a commit's mark and not yet the commit).
    acknowledged = read_high_water(queue_file)
    sequence = current_sequence(connection)
    if sequence < acknowledged:
        raise QueueIntegrityError(
            f"the queue file {queue_file} has lost acknowledged messages: it has handed out message"
            f" {sequence} at most, but message {acknowledged} was acknowledged (the file was emptied, replaced or"
            f" rolled back). Restore it from a backup; or, to accept the loss and start from what it holds, delete"
            f" {mark_path(queue_file)}. See docs/architecture.md, 'Embedded queue'."
        )
    return sequence


def read_high_water(queue_file: Path) -> int:
    """The mark beside `queue_file`; 0 when there is none (a new queue)."""
    try:
        text = mark_path(queue_file).read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return 0
    if not text:
        return 0  # left empty by a power cut after the rename: as good as no mark
    try:
        return int(text)
    except ValueError:
        raise QueueIntegrityError(
            f"{mark_path(queue_file)} does not hold a message number ({text[:40]!r}); delete it to start from what"
            f" {queue_file} holds"
        ) from None


def record_high_water(queue_file: Path, sequence: int) -> None:
    """Write the mark (after the commit that reached `sequence` is durable).

    Written whole to a file of this process's own, then renamed over the mark: a reader
    sees the old mark or the new one, never a torn one, and two processes writing at once do
    not share a temporary file. A mark may go back a little when two processes race (each
    writes what it read); that only makes the check less strict, never wrong.
    """
    mark = mark_path(queue_file)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{mark.name}.", dir=mark.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(f"{sequence}\n")
        # Not synced: one more fsync per commit would halve what the queue can take, and a
        # mark lost to a power cut (empty after the rename) only reads as no mark at all.
        os.replace(temporary, mark)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
