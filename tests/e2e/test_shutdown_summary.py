"""When `cloudscale run` stops it says what the embedded queue keeps for the next run, once."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import INGEST_ONLY, LocalHost, start_host
from tests.e2e.test_dead_letter_cli import PARKED_WITHIN_SECONDS, cloudscale, dead_letters

SEED_EVENT = {"eventType": "page_view", "correlationId": "test-1", "tenantId": "acme", "url": "/home"}
STOP_SECONDS = 30.0


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., LocalHost]]:
    """`start_host`, with every host killed at the end if the test left it running."""
    started: list[LocalHost] = []

    def run(data_dir: Path, *args: str, **settings: str) -> LocalHost:
        started.append(start_host(data_dir, *args, **settings))
        return started[-1]

    yield run
    for host in started:
        if host.process.poll() is None:
            host.crash()
        host.stop()


def stop_and_read(host: LocalHost, sig: int = signal.SIGINT) -> list[str]:
    """Stop the host as Ctrl-C would and return its output once the summary (or the exit) is in."""
    host.process.send_signal(sig)
    deadline = time.monotonic() + STOP_SECONDS
    while not any(line.startswith("Stopped.") for line in host.output):
        assert time.monotonic() < deadline, "no summary:\n" + "".join(host.output)
        time.sleep(0.05)
    assert host.process.wait(timeout=STOP_SECONDS) == 0
    host.stop()  # closes its output
    return [line.rstrip("\n") for line in host.output if line.startswith("Stopped.")]


@pytest.mark.parametrize("instances", ["1", "2"])
def test_the_messages_left_waiting_are_counted_once(
    start: Callable[..., LocalHost], tmp_path: Path, instances: str
) -> None:
    host = start(tmp_path, "--instances", instances, **INGEST_ONLY)
    with host.client() as client:
        for _ in range(2):
            assert client.post("/api/events", json=SEED_EVENT).status_code == 202
    summaries = stop_and_read(host)
    assert summaries == [
        f"Stopped. Kept in the embedded queue ({tmp_path / 'queue.sqlite3'}) for the next run: "
        "2 messages waiting to be processed, 0 dead letters."
    ]


def test_dead_letters_are_counted_and_an_empty_queue_says_so(start: Callable[..., LocalHost], tmp_path: Path) -> None:
    host = start(tmp_path / "poisoned", "--instances", "1")
    assert cloudscale(host.data_dir, "dlq", "send-poison").returncode == 0
    deadline = time.monotonic() + PARKED_WITHIN_SECONDS
    while not dead_letters(host.data_dir):
        assert time.monotonic() < deadline, "the poison message was not dead-lettered"
        time.sleep(0.2)
    [summary] = stop_and_read(host, signal.SIGTERM)
    assert summary.endswith("0 messages waiting to be processed, 1 dead letter (cloudscale dlq list).")

    empty = start(tmp_path / "empty", "--instances", "1")
    assert stop_and_read(empty) == [
        "Stopped. The embedded queue is empty: nothing waits for the next run, and no dead letters."
    ]
