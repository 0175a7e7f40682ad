"""The Functions host's HTTP request queue: `extensions.http.maxConcurrentRequests` and
`maxOutstandingRequests` of host.json.

As the host does it (azure-functions-host, `HttpRequestQueue.cs`, a Dataflow `ActionBlock` with
`MaxDegreeOfParallelism = maxConcurrentRequests` and `BoundedCapacity = maxOutstandingRequests`;
`HttpThrottleMiddleware.cs`): at most `maxConcurrentRequests` requests run at once and the others
wait, without a timeout of their own; once `maxOutstandingRequests` are running or waiting, a new
request is refused at once with 429, an empty body and `X-FUNCTION-SCALEOUT: 1` (no
`Retry-After`). Either limit at -1, or absent, is unbounded; with both unbounded the queue is off,
which is the host's default outside the Windows Consumption plan (`HttpOptionsSetup.cs`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["SCALE_OUT_HEADER", "RequestQueue"]

SCALE_OUT_HEADER = b"x-function-scaleout"
"""`ScriptConstants.AntaresScaleOutHeaderName`: set to "1" on a request refused for load."""


class RequestQueue:
    """Admits requests up to the host's limits; one instance per host process."""

    def __init__(self, max_concurrent: int | None = None, max_outstanding: int | None = None) -> None:
        self.max_concurrent = max_concurrent
        self.max_outstanding = max_outstanding
        self._running = asyncio.Semaphore(max_concurrent) if max_concurrent is not None else None
        self._outstanding = 0

    @property
    def enabled(self) -> bool:
        """Whether either limit is set (the host installs its throttle only then)."""
        return self.max_concurrent is not None or self.max_outstanding is not None

    @property
    def outstanding(self) -> int:
        """Requests running or waiting to run."""
        return self._outstanding

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[bool]:
        """Yield True once the request may run (after waiting its turn), or False at once if the
        queue is full: the caller then answers 429."""
        if self.max_outstanding is not None and self._outstanding >= self.max_outstanding:
            yield False
            return
        self._outstanding += 1
        try:
            if self._running is None:
                yield True
            else:
                async with self._running:
                    yield True
        finally:
            self._outstanding -= 1
