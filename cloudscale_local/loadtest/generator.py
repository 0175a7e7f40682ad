"""`run_load`: run the schedule on one or more workers, merge what they measured, report.

With `workers > 1` each worker is a separate process (multiprocessing, `spawn`) running its
own event loop at `target_rps / workers`, so the generator is not limited to one core. The
workers are started and warmed up (bodies pre-generated) first, then told one common start
time. Their results are merged exactly: latency samples are pooled before ranking.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import queue
import time
import traceback
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from typing import Any

from cloudscale_local.loadtest.config import LoadConfig
from cloudscale_local.loadtest.e2e import measure_end_to_end
from cloudscale_local.loadtest.events import BodyFactory
from cloudscale_local.loadtest.latency import merge_samples, summarize
from cloudscale_local.loadtest.progress import Progress, ProgressAggregator
from cloudscale_local.loadtest.report import BehindSchedule, EndToEnd, LoadReport, judge_kept_up
from cloudscale_local.loadtest.schedule import Schedule
from cloudscale_local.loadtest.worker import LATE_THRESHOLD_SECONDS, WorkerResult, WorkerSpec, run_worker

__all__ = ["E2E_MAX_TRACKED", "build_report", "run_load", "track_stride"]

E2E_MAX_TRACKED = 1_000_000
"""At most this many accepted events are followed to analytics (memory and query time)."""
START_DELAY_SECONDS = 0.25
"""Between telling the workers the start time and the start: time to get their loops going."""
READY_TIMEOUT_SECONDS = 120.0
"""How long worker processes may take to start (import, pre-generate bodies)."""


def run_load(config: LoadConfig, on_progress: Callable[[Progress], None] | None = None) -> LoadReport:
    """Run `config` and return what it measured; blocks until done (duration + answers + drain).

    `on_progress` is called about once a second with the run so far, from the thread running
    the load: this one, or, when called inside a running event loop, a thread of the run's
    own (asyncio cannot start a second loop in a thread that already runs one).
    With `workers > 1` the workers are `spawn`ed processes, which import the caller's main
    module: a script calling this needs the usual `if __name__ == "__main__":` guard.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_event_loop = False
    else:
        in_event_loop = True
    if not in_event_loop:
        return _run(config, on_progress)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="loadtest") as pool:
        return pool.submit(_run, config, on_progress).result()


def track_stride(expected_events: int, limit: int = E2E_MAX_TRACKED) -> int:
    """Follow every n-th request's events to analytics, so that at most about `limit` are followed.

    A stride rather than "the first `limit`" keeps the sample spread over the whole run.
    """
    return max(1, math.ceil(expected_events / limit))


def _run(config: LoadConfig, on_progress: Callable[[Progress], None] | None) -> LoadReport:
    schedule = Schedule(rate=config.target_rps, duration=config.duration, workers=config.workers)
    stride = track_stride(schedule.total * config.batch_size)
    specs = [
        WorkerSpec(
            worker=worker,
            schedule=schedule,
            endpoint=config.endpoint,
            batch_size=config.batch_size,
            ips=config.ips,
            tenants=config.tenants,
            track_stride=stride,
            write_key=config.write_key,
        )
        for worker in range(config.workers)
    ]
    aggregator = ProgressAggregator(on_progress, workers=config.workers)
    if config.workers == 1:
        start_wall, results = _run_here(specs[0], aggregator)
    else:
        start_wall, results = _run_in_processes(specs, aggregator)
    aggregator.emit()

    ids = [event_id for result in results for event_id in result.accepted_ids]
    accepted_at = [moment for result in results for moment in result.accepted_at]
    end_to_end = measure_end_to_end(
        config.data_dir,
        ids,
        accepted_at,
        drain_seconds=config.drain_seconds,
        sampled=stride > 1,
        on_wait=lambda found, expected: aggregator.emit("analytics", e2e_found=found, e2e_expected=expected),
    )
    return build_report(config, schedule, results, start_wall=start_wall, end_to_end=end_to_end)


def build_report(
    config: LoadConfig,
    schedule: Schedule,
    results: Sequence[WorkerResult],
    *,
    start_wall: float,
    end_to_end: EndToEnd,
) -> LoadReport:
    """Merge the workers' results into one report (latency samples pooled, never averaged)."""
    sent = sum(result.sent for result in results)
    # The sending window is the asked duration, or longer if late sends spilled past it.
    window = max(config.duration, max((result.last_send_offset for result in results), default=0.0))
    achieved = sent / window
    late_sends = sum(result.late_sends for result in results)
    status_counts: dict[str, int] = {}
    error_kinds: dict[str, int] = {}
    for result in results:
        for key, count in result.status_counts.items():
            status_counts[key] = status_counts.get(key, 0) + count
        for key, count in result.error_kinds.items():
            error_kinds[key] = error_kinds.get(key, 0) + count
    events_accepted = sum(result.events_accepted for result in results)
    cpu_seconds = sum(result.cpu_seconds for result in results)
    wall_seconds = max((result.wall_seconds for result in results), default=0.0)
    return LoadReport(
        url=config.endpoint,
        started_at=datetime.fromtimestamp(start_wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        duration_seconds=config.duration,
        target_rps=config.target_rps,
        batch_size=config.batch_size,
        workers=config.workers,
        ips=config.ips,
        tenants=config.tenants,
        requests_scheduled=schedule.total,
        requests_sent=sent,
        achieved_rps=round(achieved, 3),
        events_sent=sum(result.events_sent for result in results),
        events_accepted=events_accepted,
        accepted_events_per_second=round(events_accepted / config.duration, 3),
        status_counts=dict(sorted(status_counts.items())),
        error_kinds=dict(sorted(error_kinds.items())),
        ingest_latency_ms=summarize(merge_samples(result.latencies_ms for result in results)),
        latency_by_status_ms={
            status: summarize(merge_samples(r.latencies_by_status_ms.get(status, array("d")) for r in results))
            for status in sorted({status for r in results for status in r.latencies_by_status_ms})
        },
        behind_schedule=BehindSchedule(
            late_sends=late_sends,
            worst_lag_ms=round(max((result.worst_lag_ms for result in results), default=0.0), 3),
            threshold_ms=LATE_THRESHOLD_SECONDS * 1000,
            in_flight_cap_hits=sum(result.in_flight_cap_hits for result in results),
            skipped=sum(result.skipped for result in results),
        ),
        kept_up=judge_kept_up(
            target_rps=config.target_rps, achieved_rps=achieved, requests_sent=sent, late_sends=late_sends
        ),
        generator_cpu_seconds=round(cpu_seconds, 3),
        generator_cpu_percent=round(cpu_seconds / wall_seconds * 100, 1) if wall_seconds > 0 else 0.0,
        end_to_end=end_to_end,
        answered_seconds=round(wall_seconds, 3),
        sustained_events_per_second=round(events_accepted / max(config.duration, wall_seconds), 3)
        if wall_seconds or config.duration
        else 0.0,
    )


def _bodies(spec: WorkerSpec) -> BodyFactory:
    # Each worker its own seed: the same templates in every worker would send the same
    # correlation ids; otherwise harmless.
    return BodyFactory(
        tenants=spec.tenants, batch_size=spec.batch_size, ips=spec.ips, seed=spec.worker, write_key=spec.write_key
    )


def _run_here(spec: WorkerSpec, aggregator: ProgressAggregator) -> tuple[float, list[WorkerResult]]:
    bodies = _bodies(spec)
    start_wall = time.time() + START_DELAY_SECONDS
    aggregator.start = time.perf_counter() + START_DELAY_SECONDS
    result = asyncio.run(run_worker(spec, bodies, start_wall=start_wall, on_snapshot=aggregator.update))
    return start_wall, [result]


def _worker_process(spec: WorkerSpec, messages: Any, go: EventType, start_at: Any) -> None:
    """A worker process's body: warm up, say ready, wait for the start time, run, send the result."""
    try:
        bodies = _bodies(spec)
        messages.put(("ready", spec.worker, None))
        if not go.wait(READY_TIMEOUT_SECONDS) or start_at.value <= 0:
            return  # the parent gave up (or failed) before the start
        result = asyncio.run(
            run_worker(
                spec,
                bodies,
                start_wall=start_at.value,
                on_snapshot=lambda snapshot: messages.put(("progress", spec.worker, snapshot)),
            )
        )
        messages.put(("done", spec.worker, result))
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches the whole process group; the parent reports it
    except BaseException:
        messages.put(("failed", spec.worker, traceback.format_exc()))


def _run_in_processes(specs: Sequence[WorkerSpec], aggregator: ProgressAggregator) -> tuple[float, list[WorkerResult]]:
    # spawn, not fork: forking a process that has threads (a test runner, a harness) can
    # copy held locks into the child; spawn starts clean.
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    go = context.Event()
    start_at = context.Value("d", 0.0)
    processes = [
        context.Process(
            target=_worker_process,
            args=(spec, messages, go, start_at),
            name=f"loadtest-worker-{spec.worker}",
            daemon=True,
        )
        for spec in specs
    ]
    for process in processes:
        process.start()
    try:
        _collect(messages, processes, lambda kind, worker, payload: kind == "ready", aggregator)
        start_wall = time.time() + START_DELAY_SECONDS
        aggregator.start = time.perf_counter() + START_DELAY_SECONDS
        start_at.value = start_wall
        go.set()
        results = _collect(messages, processes, lambda kind, worker, payload: kind == "done", aggregator)
        for process in processes:
            process.join(timeout=10)
        return start_wall, sorted(results, key=lambda result: result.worker)
    finally:
        go.set()  # a worker still waiting sees start 0 and leaves
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(timeout=5)
        messages.close()
        messages.join_thread()


def _collect(
    messages: Any,
    processes: Sequence[BaseProcess],
    wanted: Callable[[str, int, Any], bool],
    aggregator: ProgressAggregator,
) -> list[Any]:
    """Read worker messages until every worker has sent one `wanted` message; their payloads."""
    got: dict[int, Any] = {}
    quiet_rounds = 0
    while len(got) < len(processes):
        try:
            kind, worker, payload = messages.get(timeout=0.5)
        except queue.Empty:
            dead = [n for n, process in enumerate(processes) if n not in got and not process.is_alive()]
            # A worker that just exited may have left its last message in the pipe: look twice.
            quiet_rounds = quiet_rounds + 1 if dead else 0
            if quiet_rounds >= 2:
                codes = ", ".join(f"worker {n} exit code {processes[n].exitcode}" for n in dead)
                raise RuntimeError(f"load generator worker(s) exited without a result: {codes}") from None
            continue
        if kind == "failed":
            raise RuntimeError(f"load generator worker {worker} failed:\n{payload}")
        if kind == "progress":
            aggregator.update(payload)
        if wanted(kind, worker, payload):
            got[worker] = payload
    return list(got.values())
