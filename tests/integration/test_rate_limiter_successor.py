"""The ingest rate limiter over the real embedded store: a restarted host inherits its predecessor's minute.

Here rather than beside the store (`shared/adapters/rate_limit/`): it drives the stage's
`RateLimiter`, and adapters (their tests included) import no stage.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ingest.rate_limiter import RateLimiter
from shared.adapters.rate_limit.embedded_rate_limit import EmbeddedRateLimitStore
from shared.domain.ratelimit import BucketLimits


async def test_a_host_replacing_a_killed_one_does_not_admit_its_predecessors_minute_again(tmp_path: Path) -> None:
    # GIVEN a host that admitted the whole global minute (100) before it was killed
    store = EmbeddedRateLimitStore(tmp_path / "ratelimit.sqlite3")
    first = RateLimiter(
        store, ip_limits=BucketLimits(1000, 100), global_per_minute=100, sync_seconds=0.05, instance_id="old"
    )
    admitted = [(await first.admit(f"client-{n}")).allowed for n in range(120)]
    assert admitted.count(True) <= 100
    # one more exchange after a sync interval, so its window is published
    await asyncio.sleep(0.1)
    await first.admit("client-x")
    await asyncio.sleep(0.1)
    # WHEN its successor starts in the same minute, knowing whom it replaces
    successor = RateLimiter(
        store,
        ip_limits=BucketLimits(1000, 100),
        global_per_minute=100,
        sync_seconds=0.05,
        instance_id="new",
        predecessor_id="old",
    )
    again = [(await successor.admit(f"client-{n}")).allowed for n in range(50)]
    # THEN what the predecessor admitted still counts: the successor admits nothing more
    assert again.count(True) == 0
    await store.close()
