"""Drives a timer-triggered function on its NCRONTAB schedule, as the timer extension does.

What the Functions host's timer listener does, on one machine (sources in
`docs/architecture.md`, "The Functions host's rules"):

- the schedule is NCRONTAB (`cloudscale_local.host.ncrontab`), evaluated in UTC;
- at start: with schedule monitoring (`use_monitor`, on unless the schedule fires more than
  once a minute), the recorded status says whether an occurrence was missed while no host
  ran; if so the function runs at once with `past_due` set. Otherwise, with
  `run_on_startup`, it runs at once. Then it waits for the next occurrence;
- invocations never overlap: the next occurrence is worked out after an invocation ends,
  from the time it started (or from the occurrence it ran for, if it fired a little early),
  so a run longer than the interval is followed by one run at once, not by a catch-up of
  every occurrence it overlapped;
- the function gets a `func.TimerRequest` as the Python worker builds it from the host's
  timer JSON (`IsPastDue`, `ScheduleStatus` when monitored, `Schedule`);
- a failed invocation (one that raised, or ran past `functionTimeout`) is retried only under
  the function's `@retry` policy; either way the schedule goes on;
- after each invocation the status (`Last`, `Next`, `LastUpdated`) is recorded when monitored.

With a `TimerLock`, the timer runs only while this process holds its singleton lock: an
instance that cannot take it keeps trying (every `lock_retry_seconds`), so when the holder
dies a survivor takes the timer over and starts it as a new host would (past-due check,
`run_on_startup`).

Stopping lets an invocation in flight finish for a grace period, then cuts it short; no new
invocation starts once a stop was asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from azure.functions.timer import TimerRequest

from cloudscale_local.host.functions import TimerFunction
from cloudscale_local.host.invocation import timer_invocation
from cloudscale_local.host.ncrontab import CronSchedule, ScheduleError
from cloudscale_local.host.retries import Outcome, run_with_retries
from cloudscale_local.host.schedule_monitor import NEVER, ScheduleMonitor, ScheduleStatus, next_occurrence
from cloudscale_local.host.timer_lock import TimerLock

__all__ = ["ServableTimer", "TimerStats", "TimerTrigger", "parse_schedule"]

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 60.0
"""The longest single wait: the loop looks at the clock again at least this often (a wall clock can jump)."""
_TIMESPAN = re.compile(r"^\d+(\.\d+)?(:\d+){1,3}(\.\d+)?$")

ServableTimer = tuple[TimerFunction, CronSchedule]
"""A timer function the local host runs, with its parsed schedule."""


def parse_schedule(expression: str) -> CronSchedule:
    """The schedule of a timer binding, once its `%SETTING%` is resolved; `ScheduleError` if it cannot run here."""
    if _TIMESPAN.match(expression.strip()):
        raise ScheduleError(
            f"{expression!r} is a TimeSpan schedule, which the timer trigger runs only on an App Service plan"
        )
    return CronSchedule.parse(expression)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class TimerStats:
    invocations: int = 0
    """Invocations, retries included."""
    failures: int = 0
    past_due: int = 0


class TimerTrigger:
    """One timer: one function, one schedule, one invocation at a time."""

    def __init__(
        self,
        function: TimerFunction,
        schedule: CronSchedule,
        monitor: ScheduleMonitor | None,
        clock: Callable[[], datetime] = _utc_now,
        function_timeout: float | None = None,
        lock: TimerLock | None = None,
        lock_retry_seconds: float = 1.0,
    ) -> None:
        """`monitor` is used only if the function asks for monitoring and the host would keep it on.

        `function_timeout` is host.json's `functionTimeout` in seconds (None: no limit).
        `lock`: the timer's singleton lock, when several instances share the data folder.
        """
        self._lock = lock
        self._lock_retry_seconds = lock_retry_seconds
        self.function = function
        self._function_timeout = function_timeout
        self.schedule = schedule
        self.stats = TimerStats()
        self.status: ScheduleStatus | None = None
        self._monitor = monitor if monitored(function, schedule) else None
        self._clock = clock
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"timer-trigger-{self.function.name}")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop waiting; let an invocation in flight finish (or cut it short after `grace_seconds`)."""
        self._stop_requested.set()
        if self._task is None:
            return
        _, pending = await asyncio.wait({self._task}, timeout=grace_seconds)
        if pending:
            logger.warning("the timer function %s was cut short at shutdown", self.function.name)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            if not await self._take_lock():
                return
            past_due = await self._start_status()
            if past_due:
                self.stats.past_due += 1
                logger.info("timer %s missed an occurrence while no host ran: running it now", self.function.name)
                await self._invoke(self._clock(), past_due=True)
            elif self.function.run_on_startup:
                await self._invoke(self._clock(), run_on_startup=True)
            while not self._stop_requested.is_set():
                assert self.status is not None
                wait = (self.status.next - self._clock()).total_seconds()
                if wait > 0:
                    await self._sleep(min(wait, MAX_WAIT_SECONDS))
                    continue
                await self._invoke(self._clock())
        except Exception:
            # Nothing the loop itself does is expected to fail; never leave a silent dead timer.
            logger.exception("the timer of %s stopped", self.function.name)
        finally:
            if self._lock is not None:
                self._lock.release()

    async def _take_lock(self) -> bool:
        """Wait until this instance holds the timer's singleton lock; False if stopped first."""
        if self._lock is None:
            return True
        failing = False
        while not self._stop_requested.is_set():
            try:
                if self._lock.try_acquire():
                    logger.info("timer %s runs on this instance", self.function.name)
                    return True
                failing = False
            except OSError:
                # Said once, not every retry (out of file descriptors, the log would fill).
                if not failing:
                    logger.exception("the singleton lock of timer %s could not be taken", self.function.name)
                failing = True
            await self._sleep(self._lock_retry_seconds)
        return False

    async def _start_status(self) -> bool:
        """Load (or begin) the schedule status; True if an occurrence was missed."""
        now = self._clock()
        if self._monitor is not None:
            try:
                last = await self._monitor.get_status(self.function.name)
                self.status, late = await self._monitor.check_past_due(self.function.name, now, self.schedule, last)
                return late > timedelta(0)
            except OSError:
                logger.exception("the schedule status of %s could not be read or written", self.function.name)
        self.status = ScheduleStatus(last=NEVER, next=next_occurrence(self.schedule, now), last_updated=NEVER)
        return False

    async def _invoke(self, at: datetime, *, past_due: bool = False, run_on_startup: bool = False) -> None:
        assert self.status is not None
        if self._stop_requested.is_set():
            return
        # The concrete class the worker's TimerRequestConverter builds (func.TimerRequest is its abstract base).
        request = TimerRequest(
            past_due=past_due,
            schedule_status=self.status.to_json() if self._monitor is not None else None,
            schedule={"AdjustForDST": True},
        )

        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            self.stats.invocations += 1
            with timer_invocation(
                self.function.name,
                retry_count=attempts,
                max_retry_count=self.function.retry.max_retry_count if self.function.retry else 0,
            ) as context:
                attempts += 1
                await self.function.invoke(request, context)

        result = await run_with_retries(
            attempt,
            self.function.retry,
            self._stop_requested,
            describe=f"timer function {self.function.name}",
            logger=logger,
            function_timeout=self._function_timeout,
        )
        self.stats.failures += result.failures
        if result.outcome is Outcome.FAILED:
            logger.info("timer function %s runs again at its next occurrence", self.function.name)
        # A timer that fired a moment before its occurrence counts from the occurrence, so the
        # same occurrence is never worked out as "next" twice.
        if not past_due and not run_on_startup and self.status.next > at:
            at = self.status.next
        self.status = ScheduleStatus(last=at, next=next_occurrence(self.schedule, at), last_updated=at)
        if self._monitor is not None:
            try:
                await self._monitor.update_status(self.function.name, self.status)
            except OSError:
                logger.exception("the schedule status of %s could not be written", self.function.name)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), timeout=seconds)


def monitored(function: TimerFunction, schedule: CronSchedule) -> bool:
    """Whether the host keeps schedule monitoring on: asked for, and the schedule fires at most once a minute."""
    return function.use_monitor and not schedule.fires_more_than_once_a_minute
