"""`EmbeddedRateLimitStore` on a real SQLite file: idle clients are forgotten."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

from shared.adapters.rate_limit.embedded_rate_limit import EmbeddedRateLimitStore
from shared.domain.ratelimit import BucketLimits, ClientDecision, ClientState, admit_client

NOW = 1_700_000_000.0
LIMITS = BucketLimits(capacity=5, refill_per_second=0.5)


def admit(now: float) -> Callable[[ClientState | None], tuple[ClientState, ClientDecision]]:
    return lambda state: admit_client(state, LIMITS, now)


def stored_keys(path: Path) -> set[str]:
    # (sqlite3's context manager only ends a transaction; closing() closes the connection)
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return {row[0] for row in connection.execute("SELECT client_key FROM clients")}


async def test_a_client_idle_longer_than_its_state_matters_is_deleted(tmp_path: Path) -> None:
    clock = [NOW]
    path = tmp_path / "ratelimit.sqlite3"
    store = EmbeddedRateLimitStore(path, client_idle_seconds=600.0, sweep_seconds=60.0, clock=lambda: clock[0])
    try:
        await store.update_client("idle", admit(NOW))
        clock[0] = NOW + 300
        await store.update_client("active", admit(NOW + 300))
        assert stored_keys(path) == {"idle", "active"}, "nothing is idle yet"

        clock[0] = NOW + 601
        await store.update_client("newcomer", admit(NOW + 601))

        assert stored_keys(path) == {"active", "newcomer"}
    finally:
        await store.close()


async def test_sweeps_are_spaced_and_bounded(tmp_path: Path) -> None:
    clock = [NOW]
    path = tmp_path / "ratelimit.sqlite3"
    store = EmbeddedRateLimitStore(
        path, client_idle_seconds=10.0, sweep_seconds=60.0, sweep_rows=2, clock=lambda: clock[0]
    )
    try:
        for n in range(5):
            await store.update_client(f"c{n}", admit(NOW))
        clock[0] = NOW + 30  # idle, but the last sweep was under a minute ago
        await store.update_client("x", admit(NOW + 30))
        assert len(stored_keys(path)) == 6

        clock[0] = NOW + 61
        await store.update_client("y", admit(NOW + 61))
        assert len(stored_keys(path)) == 5, "two rows per sweep at most"
    finally:
        await store.close()
