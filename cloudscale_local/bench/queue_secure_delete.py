"""What zeroing deleted rows costs the embedded queue: send + receive + complete, per `secure_delete` mode.

    python -m cloudscale_local.bench.queue_secure_delete [--messages 5000] [--body-bytes 900 3000 9000]

For each body size and mode (OFF, ON: what the queue uses, FAST), N messages are sent by 64
concurrent senders one message each (as ingest's requests send them), then received 32 at a
time and completed by 4 consumers, on a fresh queue file in the data folder's file system.
Prints wall time (best and median of `--repeats`), the process's CPU time and the bytes it
wrote: the bytes are what `ON` adds (a freed page written once more, zeroed), and unlike wall
time they do not depend on what else the machine is doing. A measure, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.domain.envelope import QueueMessage

__all__ = ["main"]

MODES = ("OFF", "ON", "FAST")


class _QueueWithMode(EmbeddedQueue):
    """The embedded queue with `secure_delete` set to `mode` after it opened its file."""

    def __init__(self, path: Path, mode: str) -> None:
        self._mode = mode
        super().__init__(path, lock_seconds=300.0)

    def _open(self, connection: sqlite3.Connection) -> None:
        super()._open(connection)
        connection.execute(f"PRAGMA secure_delete={self._mode}")


def _written_bytes() -> int:
    """Bytes this process handed to write() so far (Linux), or 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _body(size: int) -> bytes:
    prefix = b'{"schemaVersion":2,"event":{"eventType":"page_view","tenantId":"acme","userId":"u-1","properties":{"a":"'
    suffix = b'"}},"receivedAt":"2026-01-31T12:00:00+00:00"}'
    return prefix + b"x" * max(0, size - len(prefix) - len(suffix)) + suffix


async def _run(folder: Path, mode: str, messages: int, body: bytes) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, bytes written) for one pass on a fresh file."""
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        queue = _QueueWithMode(Path(scratch) / "queue.sqlite3", mode)
        try:
            pending = [QueueMessage(message_id=str(uuid.uuid4()), body=body) for _ in range(messages)]
            senders = asyncio.Semaphore(64)

            async def send(message: QueueMessage) -> None:
                async with senders:
                    await queue.send([message])

            async def consume() -> None:
                while received := await queue.receive(32):
                    await queue.complete_many([locked.lock_token for locked in received])

            wall, cpu, written = time.perf_counter(), time.process_time(), _written_bytes()
            await asyncio.gather(*(send(message) for message in pending))
            await asyncio.gather(*(consume() for _ in range(4)))
            return time.perf_counter() - wall, time.process_time() - cpu, _written_bytes() - written
        finally:
            queue.close()


async def _measure(args: argparse.Namespace) -> None:
    args.folder.mkdir(parents=True, exist_ok=True)
    for size in args.body_bytes:
        body = _body(size)
        results: dict[str, list[tuple[float, float, int]]] = {mode: [] for mode in args.modes}
        for _ in range(args.repeats):  # modes interleaved, so a busy moment hits each alike
            for mode in args.modes:
                results[mode].append(await _run(args.folder, mode, args.messages, body))
        baseline = statistics.median(r[0] for r in results[args.modes[0]])
        for mode in args.modes:
            walls = [r[0] for r in results[mode]]
            median = statistics.median(walls)
            print(
                f"body {len(body):>6} B  {mode:<4}  wall best {min(walls):.2f} s, median {median:.2f} s"
                f" (x{median / baseline:.2f})  cpu {statistics.median(r[1] for r in results[mode]):.2f} s"
                f"  written {statistics.median(r[2] for r in results[mode]) / 1e6:.0f} MB",
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudscale_local.bench.queue_secure_delete", description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--body-bytes", type=int, nargs="+", default=[900, 3000, 9000])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--folder",
        type=Path,
        default=Path(".cloudscale/bench"),
        help="Where the queue files go (a real disk, not tmpfs).",
    )
    asyncio.run(_measure(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
