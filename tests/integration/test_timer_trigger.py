"""The local host's timer loop, on the real clock, with schedule statuses in real files.

The function bodies are small async functions written here that record the timer request
they are given (and fail on purpose when told to).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest as WorkerTimerRequest

import function_app
from cloudscale_local.host.functions import RetryPolicy, TimerFunction, index_functions
from cloudscale_local.host.ncrontab import CronSchedule
from cloudscale_local.host.schedule_monitor import NEVER, ScheduleMonitor, ScheduleStatus
from cloudscale_local.host.servable import servable_timer_functions
from cloudscale_local.host.timer_lock import TimerLock
from cloudscale_local.host.timer_trigger import TimerTrigger
from shared.settings import load_settings
from tests.spans import RecordedSpans
from tests.waiting import wait_until

NAME = "reconcile_analytics"
EVERY_SECOND = "* * * * * *"
HOURLY = "0 15 * * * *"
TINY_RETRY = RetryPolicy(strategy="exponential_backoff", max_retry_count=2, minimum_interval=0.05, maximum_interval=1)


@dataclass(frozen=True, slots=True)
class Call:
    at: float
    """`time.monotonic()` when the function was called."""
    wall: datetime
    """The UTC time when the function was called."""
    request: func.TimerRequest

    @property
    def second(self) -> datetime:
        """The occurrence this call ran for, on an every-second schedule."""
        return self.wall.replace(microsecond=0)


class Recorder:
    """A function body that records every call; call number n fails while `fail(n)` is true."""

    def __init__(self, fail: Callable[[int], bool] = lambda call: False) -> None:
        self.calls: list[Call] = []
        self._fail = fail

    async def handle(self, timer: func.TimerRequest) -> None:
        self.calls.append(Call(time.monotonic(), datetime.now(UTC), timer))
        if self._fail(len(self.calls)):
            raise RuntimeError("the job failed (on purpose)")


def worker_request(call: Call) -> WorkerTimerRequest:
    """The request, checked to be the class the Python worker builds for a timer trigger."""
    assert isinstance(call.request, WorkerTimerRequest)
    return call.request


def timer_function(
    handler: Callable[..., object],
    schedule: str = EVERY_SECOND,
    *,
    run_on_startup: bool = False,
    use_monitor: bool = True,
    retry: RetryPolicy | None = None,
) -> TimerFunction:
    return TimerFunction(
        name=NAME,
        schedule=schedule,
        run_on_startup=run_on_startup,
        use_monitor=use_monitor,
        retry=retry,
        handler=handler,
        argument="timer",
    )


Start = Callable[[TimerFunction], TimerTrigger]


@pytest.fixture
def monitor(tmp_path: Path) -> ScheduleMonitor:
    return ScheduleMonitor(tmp_path / "timers")


@pytest.fixture
async def start(monitor: ScheduleMonitor) -> AsyncIterator[Start]:
    """Starts timers; any still running at the end is stopped."""
    started: list[TimerTrigger] = []

    def run(function: TimerFunction) -> TimerTrigger:
        trigger = TimerTrigger(function, CronSchedule.parse(function.schedule), monitor)
        trigger.start()
        started.append(trigger)
        return trigger

    yield run
    for trigger in started:
        await trigger.stop(grace_seconds=0.1)


def recorded(monitor: ScheduleMonitor) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(monitor.path(NAME).read_text(encoding="utf-8"))
    return loaded


async def test_a_timer_every_second_runs_every_second_and_stops_cleanly(start: Start, monitor: ScheduleMonitor) -> None:
    # GIVEN a timer function on a schedule of every second
    recorder = Recorder()
    trigger = start(timer_function(recorder.handle))

    # WHEN it has run three times
    await wait_until(lambda: len(recorder.calls) >= 3, within=5)
    stopping = time.monotonic()
    await trigger.stop(grace_seconds=10)
    stopped_after = time.monotonic() - stopping
    calls = len(recorder.calls)
    await asyncio.sleep(1.5)

    # THEN it got a TimerRequest as the worker builds it, about a second apart
    requests = [worker_request(call) for call in recorder.calls]
    assert [request.past_due for request in requests] == [False] * len(requests)
    assert all(request.schedule == {"AdjustForDST": True} for request in requests)
    # (more than once a minute: the host turns monitoring off, so there is no status to pass or record)
    assert all(request.schedule_status == {} for request in requests)
    assert not monitor.path(NAME).exists()
    # (one call per occurrence, each in its own second, none long after the one before)
    seconds = [call.second for call in recorder.calls]
    assert seconds == sorted(set(seconds)), seconds
    assert all(b.at - a.at < 2.5 for a, b in itertools.pairwise(recorder.calls))
    # AND it stopped at once, and never ran again
    assert stopped_after < 0.5
    assert len(recorder.calls) == calls


async def test_run_on_startup_runs_at_once_then_waits_for_the_schedule(start: Start) -> None:
    recorder = Recorder()
    started = time.monotonic()
    start(timer_function(recorder.handle, HOURLY, run_on_startup=True))

    await wait_until(lambda: len(recorder.calls) == 1, within=2)
    await asyncio.sleep(0.3)

    assert recorder.calls[0].at - started < 1
    assert recorder.calls[0].request.past_due is False
    assert len(recorder.calls) == 1


async def test_a_new_monitored_timer_records_its_next_occurrence_and_does_not_run(
    start: Start, monitor: ScheduleMonitor
) -> None:
    recorder = Recorder()
    before = datetime.now(UTC)
    trigger = start(timer_function(recorder.handle, HOURLY))

    await wait_until(monitor.path(NAME).exists, within=2)
    await asyncio.sleep(0.2)

    status = recorded(monitor)
    assert datetime.fromisoformat(status["Next"]) == CronSchedule.parse(HOURLY).next_after(before)
    assert datetime.fromisoformat(status["Last"]) == NEVER
    assert recorder.calls == []
    assert trigger.status is not None
    assert trigger.status.next == datetime.fromisoformat(status["Next"])


async def test_an_occurrence_missed_while_no_host_ran_runs_at_once_past_due(
    start: Start, monitor: ScheduleMonitor
) -> None:
    # GIVEN a monitored hourly timer whose last recorded run was three hours ago, so the
    # occurrence it was waiting for passed while no host ran
    schedule = CronSchedule.parse(HOURLY)
    now = datetime.now(UTC)
    last = schedule.next_after(now - timedelta(hours=3))
    assert last is not None
    missed = schedule.next_after(last)
    assert missed is not None
    assert missed < now
    before = ScheduleStatus(last=last, next=missed, last_updated=last)
    await monitor.update_status(NAME, before)

    # WHEN the host starts
    recorder = Recorder()
    start(timer_function(recorder.handle, HOURLY))
    await wait_until(lambda: len(recorder.calls) == 1, within=2)
    await wait_until(lambda: datetime.fromisoformat(recorded(monitor)["Last"]) > missed, within=2)

    # THEN it ran at once, past due, and was told the status it was late for
    request = worker_request(recorder.calls[0])
    assert request.past_due is True
    assert request.schedule_status == before.to_json()
    # AND the record now waits for the next occurrence after this run
    status = recorded(monitor)
    ran_at = datetime.fromisoformat(status["Last"])
    assert now <= ran_at <= datetime.now(UTC)
    assert datetime.fromisoformat(status["Next"]) == schedule.next_after(ran_at)


async def test_a_changed_schedule_is_not_taken_for_a_missed_occurrence(start: Start, monitor: ScheduleMonitor) -> None:
    # GIVEN a record written under another schedule (daily at 03:00), whose next time has passed
    now = datetime.now(UTC)
    await monitor.update_status(
        NAME,
        ScheduleStatus(
            last=now - timedelta(days=2), next=now - timedelta(days=1), last_updated=now - timedelta(days=2)
        ),
    )

    # WHEN the host starts with the hourly schedule
    recorder = Recorder()
    start(timer_function(recorder.handle, HOURLY))
    await wait_until(lambda: datetime.fromisoformat(recorded(monitor)["Next"]) > now, within=2)
    await asyncio.sleep(0.2)

    # THEN nothing ran, and the record waits for the new schedule's next occurrence
    assert recorder.calls == []
    status = recorded(monitor)
    assert datetime.fromisoformat(status["Last"]) == NEVER
    assert datetime.fromisoformat(status["Next"]) == CronSchedule.parse(HOURLY).next_after(now)


async def test_a_failing_timer_function_keeps_its_schedule(start: Start) -> None:
    # GIVEN a timer every second whose function always fails, with no retry policy
    recorder = Recorder(fail=lambda call: True)
    trigger = start(timer_function(recorder.handle))

    # WHEN it has failed three times
    await wait_until(lambda: len(recorder.calls) >= 3, within=5)
    await trigger.stop()

    # THEN each failure waited for the next occurrence (no retry without a policy)
    seconds = [call.second for call in recorder.calls]
    assert len(set(seconds)) == len(seconds), seconds
    assert trigger.stats.failures == trigger.stats.invocations == len(recorder.calls)


async def test_a_timer_function_with_a_retry_policy_is_retried_then_waits_for_its_schedule(start: Start) -> None:
    # GIVEN an hourly timer that runs on startup and always fails, with two retries 0.05 s apart
    recorder = Recorder(fail=lambda call: True)
    trigger = start(timer_function(recorder.handle, HOURLY, run_on_startup=True, retry=TINY_RETRY))

    # WHEN it has run
    await wait_until(lambda: len(recorder.calls) == 3, within=2)
    await asyncio.sleep(0.4)

    # THEN it ran once and was retried twice, quickly, then no more until the next occurrence
    assert len(recorder.calls) == 3
    assert recorder.calls[2].at - recorder.calls[0].at < 0.5
    assert trigger.status is not None
    assert trigger.status.next == CronSchedule.parse(HOURLY).next_after(trigger.status.last)


async def test_stop_cuts_a_long_invocation_short_after_the_grace_period(start: Start) -> None:
    running = asyncio.Event()

    async def hang(timer: func.TimerRequest) -> None:
        running.set()
        await asyncio.Event().wait()

    trigger = start(timer_function(hang, HOURLY, run_on_startup=True))
    await asyncio.wait_for(running.wait(), timeout=2)

    stopping = time.monotonic()
    await trigger.stop(grace_seconds=0.2)

    assert 0.2 <= time.monotonic() - stopping < 1


def test_the_app_timer_is_served_locally_unless_disabled() -> None:
    index = index_functions(function_app.app)
    settings = load_settings({})

    timers, unserved = servable_timer_functions(index, settings, {}, embedded=True)
    off, reasons = servable_timer_functions(index, settings, {f"AzureWebJobs.{NAME}.Disabled": "true"}, embedded=True)

    served = {
        function.name: (function.run_on_startup, function.use_monitor, str(schedule)) for function, schedule in timers
    }
    # The erasure timer's schedule is an app setting (%CLOUDSCALE_ERASURE_SCHEDULE%): its default when unset.
    assert served == {NAME: (False, True, HOURLY), "privacy_erasures": (False, True, "0 */1 * * * *")}
    assert unserved == {}
    assert [function.name for function, _ in off] == ["privacy_erasures"]
    assert reasons == {NAME: f"disabled by AzureWebJobs.{NAME}.Disabled"}


async def test_an_invocation_past_function_timeout_is_cut_short_and_the_schedule_goes_on() -> None:
    # GIVEN a timer every second whose function hangs on its first call, and a functionTimeout of 0.2 s
    calls: list[float] = []
    never = asyncio.Event()

    async def hang_once(timer: func.TimerRequest) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            await never.wait()

    trigger = TimerTrigger(timer_function(hang_once), CronSchedule.parse(EVERY_SECOND), None, function_timeout=0.2)
    trigger.start()
    try:
        # WHEN it has been called twice
        await wait_until(lambda: len(calls) >= 2, within=5)
    finally:
        await trigger.stop(grace_seconds=0.1)

    # THEN the hung call counted as a failure and the next occurrence ran as usual
    assert trigger.stats.failures == 1
    assert trigger.stats.invocations >= 2


async def test_a_timer_function_gets_an_invocation_context_with_a_trace_of_its_own(
    start: Start, spans: RecordedSpans
) -> None:
    # GIVEN a timer function that takes the invocation context, as the app's reconcile_analytics does
    contexts: list[func.Context] = []

    async def handle(timer: func.TimerRequest, context: func.Context) -> None:
        contexts.append(context)

    start(timer_function(handle, HOURLY, run_on_startup=True))
    await wait_until(lambda: len(contexts) == 1, within=2)

    # THEN it is called with one, carrying the host's trace context
    [context] = contexts
    assert context.function_name == NAME
    host_span = spans.one(NAME)
    _, trace_id, span_id, _ = context.trace_context.trace_parent.split("-")
    assert (trace_id, span_id) == (f"{host_span.context.trace_id:032x}", f"{host_span.context.span_id:016x}")
    assert host_span.attributes is not None
    assert host_span.attributes["faas.trigger"] == "timer"


async def test_a_timer_runs_only_where_its_singleton_lock_is_held_and_moves_when_the_holder_lets_go(
    tmp_path: Path, monitor: ScheduleMonitor
) -> None:
    # GIVEN two instances' triggers of one timer sharing a data folder, one of them holding its lock
    locks = tmp_path / "timers" / "locks"
    first, second = Recorder(), Recorder()
    holder = TimerTrigger(
        timer_function(first.handle), CronSchedule.parse(EVERY_SECOND), monitor, lock=TimerLock(locks, NAME)
    )
    holder.start()
    await wait_until(lambda: len(first.calls) >= 1, within=5)
    waiting = TimerTrigger(
        timer_function(second.handle),
        CronSchedule.parse(EVERY_SECOND),
        monitor,
        lock=TimerLock(locks, NAME),
        lock_retry_seconds=0.05,
    )
    waiting.start()
    try:
        # WHEN the holder has run twice more
        seen = len(first.calls)
        await wait_until(lambda: len(first.calls) >= seen + 2, within=5)
        # THEN the other instance never ran it
        assert second.calls == []

        # WHEN the holder stops (as a killed process's lock is released by the kernel)
        await holder.stop(grace_seconds=1)
        # THEN the other instance takes the timer over
        await wait_until(lambda: len(second.calls) >= 1, within=5)
    finally:
        await holder.stop(grace_seconds=0.1)
        await waiting.stop(grace_seconds=0.1)
    # AND the two never ran the same occurrence
    assert not {call.second for call in first.calls} & {call.second for call in second.calls}


def test_a_timer_lock_is_held_by_one_process_at_a_time_and_released_when_its_holder_dies(tmp_path: Path) -> None:
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from cloudscale_local.host.timer_lock import TimerLock;"
            "assert TimerLock(Path(sys.argv[1]), 'job').try_acquire(); print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "held"
        lock = TimerLock(tmp_path, "job")
        assert not lock.try_acquire()
    finally:
        holder.kill()
        holder.wait(timeout=10)
        holder.stdout.close()
    assert lock.try_acquire()
    assert lock.held
    lock.release()


def test_a_lock_that_cannot_be_taken_for_another_reason_keeps_no_file_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a file system that refuses locks (ENOLCK), tried again and again as the timer does every second
    def no_locks(_descriptor: int, _operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr("cloudscale_local.host.timer_lock.fcntl.flock", no_locks)
    lock = TimerLock(tmp_path, "job")
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(OSError, match="No locks available"):
            lock.try_acquire()
    # THEN no attempt left its descriptor behind
    assert len(os.listdir("/proc/self/fd")) == before
