"""A function's `@retry` policy, run the way the Functions host runs it.

The host (the WebJobs SDK's `FunctionExecutorExtensions.TryExecuteAsync`, sources in
`docs/architecture.md`) invokes the function; if it raised and the function has a retry
policy, it waits the policy's next delay and invokes it again, up to `max_retry_count`
retries (-1: without end), then gives up and logs an error. Without a policy a failed
invocation is not retried at all. An invocation that runs past `functionTimeout` is cut
short and counts as failed. A stop request during a wait ends the retries at once.
What happens after that is the trigger's business: the Cosmos DB trigger checkpoints past
the batch anyway, the timer waits for its next occurrence.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cloudscale_local.host.functions import RetryPolicy

__all__ = ["Outcome", "RetryResult", "run_with_retries"]


class Outcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The last invocation raised and the policy has no retry left (or there is no policy)."""
    STOPPED = "stopped"
    """The last invocation raised and the host was asked to stop before the next retry."""


@dataclass(frozen=True, slots=True)
class RetryResult:
    outcome: Outcome
    invocations: int
    failures: int

    @property
    def retries(self) -> int:
        return self.invocations - 1


async def run_with_retries(
    invoke: Callable[[], Awaitable[None]],
    policy: RetryPolicy | None,
    stop: asyncio.Event,
    *,
    describe: str,
    logger: logging.Logger,
    function_timeout: float | None = None,
) -> RetryResult:
    """Invoke until it succeeds, the policy's retries are spent, or `stop` is set.

    `describe` names the invocation in the log ("function f on changes 3-7");
    `function_timeout` is host.json's `functionTimeout` in seconds (None: no limit).
    """
    invocations = 0
    while True:
        invocations += 1
        deadline = asyncio.timeout(function_timeout)
        try:
            async with deadline:
                await invoke()
        except Exception:
            if deadline.expired():
                logger.error("%s ran past functionTimeout (%g s) and was cut short", describe, function_timeout)
            retry = invocations  # the retry that would come next (1 for the first)
            if policy is None:
                logger.exception("%s failed; it has no retry policy", describe)
                return RetryResult(Outcome.FAILED, invocations, invocations)
            if policy.max_retry_count != -1 and retry > policy.max_retry_count:
                logger.exception("%s failed after %d retries", describe, invocations - 1)
                return RetryResult(Outcome.FAILED, invocations, invocations)
            delay = policy.delay(retry)
            logger.exception("%s failed (retry %d in %.2f s)", describe, retry, delay)
        else:
            return RetryResult(Outcome.SUCCEEDED, invocations, invocations - 1)
        if stop.is_set():
            return RetryResult(Outcome.STOPPED, invocations, invocations)
        # Only a stop request cuts a retry wait short, as the host's cancellation token does.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop.is_set():
            return RetryResult(Outcome.STOPPED, invocations, invocations)
