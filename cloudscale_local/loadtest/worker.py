"""One sender: a single asyncio event loop sending its share of the schedule over aiohttp.

Open loop: the scheduler starts each request as its own task when it is due and never
waits for an answer, so a slow response cannot delay the requests after it. The only
brake is a generous cap on requests in flight (it keeps a stalled service from growing the
generator's memory without bound); every time the cap holds a send back, that send starts
late and is counted so.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

from cloudscale_local.loadtest.events import BodyFactory
from cloudscale_local.loadtest.schedule import Schedule

__all__ = [
    "LATE_THRESHOLD_SECONDS",
    "REQUEST_TIMEOUT_SECONDS",
    "WorkerResult",
    "WorkerSnapshot",
    "WorkerSpec",
    "pool_size_for",
    "max_in_flight_for",
    "run_worker",
]

LATE_THRESHOLD_SECONDS = 0.005
"""A send that starts more than this after its due time is behind schedule."""
REQUEST_TIMEOUT_SECONDS = 30.0
"""A request not answered within this is a transport error (`error`)."""
WINDOW_GRACE_SECONDS = 1.0
"""How long after the run's last due time late sends may still start; the rest are skipped."""
PROGRESS_INTERVAL_SECONDS = 1.0


def pool_size_for(rate: float) -> int:
    """Keep-alive connections for one worker sending `rate` requests/s.

    Little's law: connections busy = rate x latency. A tenth of a second of latency at the
    rate, at least 16 and at most 256; aiohttp opens connections only as they are needed.
    """
    return max(16, min(256, math.ceil(rate / 10)))


def max_in_flight_for(rate: float) -> int:
    """The cap on one worker's unanswered requests: five seconds of its rate, at least 1024."""
    return max(1024, min(50_000, math.ceil(rate * 5)))


@dataclass(frozen=True)
class WorkerSpec:
    """What one worker sends (picklable: it crosses into worker processes)."""

    worker: int
    schedule: Schedule
    endpoint: str
    batch_size: int
    ips: int
    tenants: int
    track_stride: int = 1
    """Follow every `track_stride`-th request's accepted events to the analytics store."""
    write_key: str | None = field(default=None, repr=False)
    """Sent as `Authorization: Bearer` (never printed: `repr=False`)."""


@dataclass
class WorkerSnapshot:
    """A worker's counters so far, for the live progress line."""

    worker: int
    sent: int
    status_counts: dict[str, int]
    new_latencies_ms: list[float]
    """Latencies measured since the worker's previous snapshot."""
    in_flight: int
    elapsed: float
    """Seconds since the start, by this worker's clock, when the snapshot was taken."""
    done: bool = False


@dataclass
class WorkerResult:
    """Everything one worker measured; `generator.merge_results` combines several."""

    worker: int
    scheduled: int
    sent: int = 0
    skipped: int = 0
    events_sent: int = 0
    events_accepted: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    latencies_ms: array[float] = field(default_factory=lambda: array("d"))
    latencies_by_status_ms: dict[str, array[float]] = field(default_factory=dict)
    """The same samples again, by HTTP status: under overload, the 202s and the refusals differ."""
    late_sends: int = 0
    worst_lag_ms: float = 0.0
    in_flight_cap_hits: int = 0
    last_send_offset: float = 0.0
    """Seconds from the start to the start of this worker's last send."""
    wall_seconds: float = 0.0
    """From the start until every answer was back."""
    cpu_seconds: float = 0.0
    accepted_ids: list[str] = field(default_factory=list)
    accepted_at: array[float] = field(default_factory=lambda: array("d"))
    """Unix time at which the 202 for `accepted_ids[k]` arrived."""


class _Sender:
    def __init__(self, spec: WorkerSpec, bodies: BodyFactory, session: aiohttp.ClientSession, start: float) -> None:
        self.spec = spec
        self.bodies = bodies
        self.session = session
        self.start = start
        # perf_counter is the stopwatch; wall time (for the analytics store's timestamps) is
        # derived from it with one offset taken here, which costs nothing per request.
        self.wall_offset = time.time() - time.perf_counter()
        self.result = WorkerResult(worker=spec.worker, scheduled=spec.schedule.count_for(spec.worker))
        max_in_flight = max_in_flight_for(spec.schedule.rate / spec.schedule.workers)
        self.slots = asyncio.Semaphore(max_in_flight)
        self.in_flight = 0
        self.reported = 0
        self.finished_sending = False

    def _sending_elapsed(self) -> float:
        # Once every send has started, the clock stops at the end of the sending window, so
        # the rate is not diluted by the wait for the last answers.
        elapsed = time.perf_counter() - self.start
        if self.finished_sending:
            return min(elapsed, max(self.spec.schedule.duration, self.result.last_send_offset))
        return elapsed

    async def run(self) -> None:
        schedule, worker, result = self.spec.schedule, self.spec.worker, self.result
        window_end = self.start + schedule.duration + WINDOW_GRACE_SECONDS
        tasks: set[asyncio.Task[None]] = set()
        j = 0
        while j < result.scheduled:
            index = schedule.global_index(worker, j)
            due = self.start + schedule.due(index)
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
                continue
            if now >= window_end:
                result.skipped = result.scheduled - j
                break
            if self.slots.locked():
                result.in_flight_cap_hits += 1
            await self.slots.acquire()
            task = asyncio.create_task(self._send(index, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            j += 1
        self.finished_sending = True
        if tasks:
            await asyncio.gather(*tasks)

    async def _send(self, index: int, due: float) -> None:
        # The scheduler took a slot for this send; it is given back however the send ends.
        try:
            await self._send_once(index, due)
        finally:
            self.slots.release()

    async def _send_once(self, index: int, due: float) -> None:
        result = self.result
        started = time.perf_counter()
        lag = started - due
        if lag > LATE_THRESHOLD_SECONDS:
            result.late_sends += 1
        result.worst_lag_ms = max(result.worst_lag_ms, lag * 1000)
        result.last_send_offset = max(result.last_send_offset, started - self.start)
        body, ids = self.bodies.body(index, started + self.wall_offset)
        result.sent += 1
        result.events_sent += len(ids)
        self.in_flight += 1
        try:
            sent_at = time.perf_counter()
            async with self.session.post(self.spec.endpoint, data=body, headers=self.bodies.headers(index)) as answer:
                payload = await answer.read()
                status = answer.status
            answered_at = time.perf_counter()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            result.status_counts["error"] = result.status_counts.get("error", 0) + 1
            kind = type(exc).__name__
            result.error_kinds[kind] = result.error_kinds.get(kind, 0) + 1
            return
        finally:
            self.in_flight -= 1
        key = str(status)
        result.status_counts[key] = result.status_counts.get(key, 0) + 1
        latency_ms = (answered_at - sent_at) * 1000
        result.latencies_ms.append(latency_ms)
        result.latencies_by_status_ms.setdefault(key, array("d")).append(latency_ms)
        if status == 202:
            self._accepted(index, payload, answered_at + self.wall_offset)

    def _accepted(self, index: int, payload: bytes, wall: float) -> None:
        try:
            answer = orjson.loads(payload)
            accepted = int(answer["accepted"])
            results = answer["results"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # not the ingest API's answer (another endpoint): no events to count
        self.result.events_accepted += accepted
        if index % self.spec.track_stride == 0:
            for item in results:
                if isinstance(item, dict) and item.get("status") == "accepted" and "eventId" in item:
                    self.result.accepted_ids.append(str(item["eventId"]))
                    self.result.accepted_at.append(wall)

    def snapshot(self, done: bool = False) -> WorkerSnapshot:
        latencies = self.result.latencies_ms
        new = latencies[self.reported :].tolist()
        self.reported = len(latencies)
        return WorkerSnapshot(
            worker=self.spec.worker,
            sent=self.result.sent,
            status_counts=dict(self.result.status_counts),
            new_latencies_ms=new,
            in_flight=self.in_flight,
            elapsed=self._sending_elapsed(),
            done=done,
        )


async def run_worker(
    spec: WorkerSpec,
    bodies: BodyFactory,
    *,
    start_wall: float | None = None,
    on_snapshot: Callable[[WorkerSnapshot], None] | None = None,
) -> WorkerResult:
    """Send `spec`'s share of the schedule, starting at Unix time `start_wall` (None: now).

    Returns once every request is answered or has timed out. `on_snapshot` is called about
    once a second from the event loop, and once more at the end with `done` set.
    """
    start = time.perf_counter()
    if start_wall is not None:
        start += max(0.0, start_wall - time.time())
    rate = spec.schedule.rate / spec.schedule.workers
    connector = aiohttp.TCPConnector(limit=pool_size_for(rate), limit_per_host=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        sender = _Sender(spec, bodies, session, start)
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        reporter = asyncio.create_task(_report(sender, on_snapshot)) if on_snapshot else None
        cpu_before = time.process_time()
        try:
            await sender.run()
        finally:
            if reporter is not None:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
        result = sender.result
        result.cpu_seconds = time.process_time() - cpu_before
        result.wall_seconds = time.perf_counter() - start
    if on_snapshot is not None:
        on_snapshot(sender.snapshot(done=True))
    return result


async def _report(sender: _Sender, on_snapshot: Callable[[WorkerSnapshot], None]) -> None:
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_SECONDS)
        on_snapshot(sender.snapshot())
