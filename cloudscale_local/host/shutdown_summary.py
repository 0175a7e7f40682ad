"""The line `cloudscale run` prints when it stops: what the embedded queue keeps for the next run.

Read from the queue file after every instance has stopped (the supervisor prints it once for
all of them), on a read-only connection of its own: messages still waiting (never delivered, or
handed back when the shutdown cut an invocation short) and the dead letters. On the Azure
backend the queue is Service Bus, which the local host does not own: nothing is printed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from shared.adapters.event_queue.embedded_queue import EMBEDDED_QUEUE_FILE
from shared.settings import Settings

__all__ = ["print_queue_summary", "queue_summary"]


def queue_summary(settings: Settings) -> str | None:
    """One or two lines on what waits in the embedded queue; None on Azure or if it cannot be read."""
    if settings.backend != "embedded":
        return None
    path = settings.data_dir / EMBEDDED_QUEUE_FILE
    counts = _counts(path)
    if counts is None:
        return None
    waiting, dead = counts
    if not waiting and not dead:
        return "Stopped. The embedded queue is empty: nothing waits for the next run, and no dead letters."
    return (
        f"Stopped. Kept in the embedded queue ({path}) for the next run: "
        f"{_plural(waiting, 'message')} waiting to be processed, "
        f"{_plural(dead, 'dead letter')}" + (" (cloudscale dlq list)." if dead else ".")
    )


def print_queue_summary(settings: Settings) -> None:
    """Print `queue_summary`, if there is one."""
    summary = queue_summary(settings)
    if summary is not None:
        print(summary, flush=True)


def _counts(path: Path) -> tuple[int, int] | None:
    if not path.is_file():
        return None
    # A summary is not worth an error at exit: a file that cannot be read says nothing.
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)) as connection,
    ):
        waiting = int(connection.execute("SELECT count(*) FROM messages").fetchone()[0])
        dead = int(connection.execute("SELECT count(*) FROM dead_letters").fetchone()[0])
        return waiting, dead
    return None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
