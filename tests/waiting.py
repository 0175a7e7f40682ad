"""Bounded waiting for a condition in async tests (a test never waits without a limit)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def wait_until(condition: Callable[[], bool], within: float = 5.0, interval: float = 0.005) -> None:
    """Return once `condition()` holds; fail the test if it still does not after `within` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(interval)
