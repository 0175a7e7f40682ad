"""Runs the benchmark: each scenario against its own fresh server and data folder, one after another.

A host scenario starts `cloudscale run --port 0` (with `--instances N` where the host has it)
in a script root of its own: a folder holding a bench copy of `host.json` (with the HTTP limits
the overload scenario sets), with the checkout on `PYTHONPATH` so the app imports as usual.
After a short wrk warm-up, the CPU of the host's whole process tree is read, the load runs, a
pipeline scenario waits until analytics holds every accepted event, and the CPU is read again.
The ceiling scenario runs the do-nothing ASGI app (`ceiling.py`) in as many processes as the
host's instances.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cloudscale_local.bench.ceiling import serve_ceiling
from cloudscale_local.bench.keys import create_bench_key
from cloudscale_local.bench.measure import (
    MemorySampler,
    count_rows,
    queue_depth,
    received_to_analytics_ms,
    tree_cpu_seconds,
)
from cloudscale_local.bench.scenarios import BENCH_CLIENT_IPS, BENCH_SETTINGS, Scenario
from cloudscale_local.bench.wrk import WrkResult, run_wrk
from cloudscale_local.loadtest import LoadConfig, LoadReport, run_load
from cloudscale_local.loadtest.latency import LatencySummary, summarize

__all__ = ["BenchOptions", "Drain", "ScenarioResult", "instances_supported", "run_scenario"]

CHECKOUT = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 90
DRAIN_STALL_SECONDS = 30.0
"""A drain that makes no progress for this long is given up (the rest is reported missing)."""
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class BenchOptions:
    """How every scenario is run (the command line's options)."""

    duration: float = 60.0
    instances: int = os.cpu_count() or 1
    threads: int = 1
    connections: int = 64
    warmup: float = 2.0
    drain_timeout: float = 600.0
    overload_factor: float = 3.0
    overload_rate: float | None = None
    """Requests/s for the overload scenario; None: `overload_factor` x (c)'s accepted events/s."""
    max_concurrent_requests: int = 16
    max_outstanding_requests: int = 32
    generator_workers: int = 1


@dataclass(frozen=True)
class Drain:
    """After the load: how long until analytics held every accepted event, and how fresh they were."""

    expected: int
    arrived: int
    stored: int
    seconds: float
    to_analytics_ms: LatencySummary
    end_to_end_events_per_second: float | None
    """Events of the measured load per second, from its start to the last one's arrival in analytics."""


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    instances: int
    wrk: WrkResult | None = None
    load: LoadReport | None = None
    """The open-loop run (overload)."""
    cpu_seconds: float | None = None
    """CPU of the server's process tree over the load (and the drain, for the pipeline)."""
    drain: Drain | None = None
    queue_depth_at_end: float | None = None
    memory_mb: list[float] = field(default_factory=list)
    """Resident memory of the host's process tree, sampled every half second over the load."""
    offered_rps: float | None = None

    @property
    def accepted_events(self) -> int:
        if self.wrk is not None:
            return self.wrk.accepted_events
        return self.load.events_accepted if self.load is not None else 0

    @property
    def accepted_events_per_second(self) -> float:
        if self.wrk is not None:
            return self.wrk.accepted_events_per_second
        return self.load.sustained_events_per_second if self.load is not None else 0.0

    @property
    def cpu_ms_per_event(self) -> float | None:
        if not self.cpu_seconds or not self.accepted_events:
            return None
        return self.cpu_seconds * 1000 / self.accepted_events

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.key,
            "instances": self.instances,
            "wrk": self.wrk.to_dict() if self.wrk else None,
            "load": self.load.to_dict() if self.load else None,
            "cpuSeconds": self.cpu_seconds,
            "cpuMsPerEvent": self.cpu_ms_per_event,
            "drain": None
            if self.drain is None
            else {
                "expected": self.drain.expected,
                "arrived": self.drain.arrived,
                "stored": self.drain.stored,
                "seconds": self.drain.seconds,
                "toAnalyticsMs": self.drain.to_analytics_ms.__dict__,
                "endToEndEventsPerSecond": self.drain.end_to_end_events_per_second,
            },
            "queueDepthAtEnd": self.queue_depth_at_end,
            "memoryMb": self.memory_mb,
            "offeredRps": self.offered_rps,
        }


@functools.cache
def _run_help() -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", "run", "--help"],
        capture_output=True,
        text=True,
        cwd=CHECKOUT,
        check=False,
        timeout=60,
    )
    return completed.stdout


def instances_supported() -> bool:
    """Whether this checkout's `cloudscale run` takes `--instances`."""
    return "--instances" in _run_help()


def quiet_supported() -> bool:
    """Whether this checkout's `cloudscale run` takes `--quiet` (its hosts print a line per invocation)."""
    return "--quiet" in _run_help()


def run_scenario(scenario: Scenario, options: BenchOptions, *, capacity: float | None = None) -> ScenarioResult:
    """Run `scenario` on a fresh server; `capacity` (events/s of (c)) sets the overload rate."""
    instances = options.instances if instances_supported() else 1
    if scenario.kind == "overload":
        # One instance at a multiple of its share of (c): the bound is per instance (each sheds
        # what it cannot take), and an open-loop generator on this machine cannot offer three
        # times what every instance together takes while they use the cores it needs.
        instances = 1
    if scenario.kind == "ceiling":
        with serve_ceiling(instances) as (url, pids):
            _wrk(url + "/api/events", options, scenario, warmup=True)
            before = tree_cpu_seconds(pids)
            result = _wrk(url + "/api/events", options, scenario)
            return ScenarioResult(scenario, instances, wrk=result, cpu_seconds=_used(before, tree_cpu_seconds(pids)))
    folder = Path(tempfile.mkdtemp(prefix=f"cloudscale-bench-{scenario.key}-"))
    try:
        http = None
        if scenario.kind == "overload":
            http = {
                "maxConcurrentRequests": options.max_concurrent_requests,
                "maxOutstandingRequests": options.max_outstanding_requests,
            }
        key = create_bench_key(folder / "data") if scenario.write_key else None
        with _host(folder, scenario, instances, http) as (url, pid):
            warm = _wrk(url + "/api/events", options, scenario, warmup=True, write_key=key)
            if scenario.kind == "overload":
                return _overload(scenario, options, instances, url, pid, folder / "data", warm, capacity, key)
            before = tree_cpu_seconds([pid])
            started = time.time()
            result = _wrk(url + "/api/events", options, scenario, write_key=key)
            drain = None
            if scenario.kind == "pipeline":
                expected = warm.accepted_events + result.accepted_events
                drain = _drain(folder / "data", expected, warm.accepted_events, started, options)
            cpu = _used(before, tree_cpu_seconds([pid]))
            return ScenarioResult(
                scenario, instances, wrk=result, cpu_seconds=cpu, drain=drain, queue_depth_at_end=queue_depth(url)
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _overload(
    scenario: Scenario,
    options: BenchOptions,
    instances: int,
    url: str,
    pid: int,
    data_dir: Path,
    warm: WrkResult,
    capacity: float | None,
    write_key: str | None,
) -> ScenarioResult:
    # `capacity` is what (c) accepted with `options.instances` instances: this one instance's share.
    share = capacity / max(1, options.instances) if capacity else None
    rate = options.overload_rate or (options.overload_factor * share if share else None)
    if rate is None:
        raise ValueError("the overload scenario needs (c)'s capacity: run 'full' first or pass --overload-rate")
    config = LoadConfig(
        url=url,
        duration=options.duration,
        target_rps=rate,
        ips=BENCH_CLIENT_IPS,
        workers=options.generator_workers,
        data_dir=None,
        write_key=write_key,
    )
    before = tree_cpu_seconds([pid])
    with MemorySampler([pid]) as memory:
        report = run_load(config)
    expected = warm.accepted_events + report.events_accepted
    drain = _drain(data_dir, expected, warm.accepted_events, None, options)
    return ScenarioResult(
        scenario,
        instances,
        load=report,
        cpu_seconds=_used(before, tree_cpu_seconds([pid])),
        drain=drain,
        queue_depth_at_end=queue_depth(url),
        memory_mb=[round(rss / 2**20, 1) for _, rss in memory.samples],
        offered_rps=rate,
    )


def _wrk(
    url: str, options: BenchOptions, scenario: Scenario, *, warmup: bool = False, write_key: str | None = None
) -> WrkResult:
    return run_wrk(
        url,
        duration=options.warmup if warmup else options.duration,
        threads=options.threads,
        connections=options.connections,
        batch_size=scenario.batch_size,
        addresses=BENCH_CLIENT_IPS,
        write_key=write_key,
    )


def _drain(data_dir: Path, expected: int, warm: int, started: float | None, options: BenchOptions) -> Drain:
    """Wait until analytics holds `expected` events (or the drain stalls); read their latencies.

    `warm` of them came from the warm-up, before `started` (Unix time): the end-to-end rate
    counts only the others.
    """
    began = time.monotonic()
    arrived, progress_at = 0, began
    while True:
        count = count_rows(data_dir, "analytics")
        now = time.monotonic()
        if count > arrived:
            arrived, progress_at = count, now
        if arrived >= expected or now - progress_at > DRAIN_STALL_SECONDS or now - began > options.drain_timeout:
            break
        time.sleep(POLL_SECONDS)
    latencies, last = received_to_analytics_ms(data_dir)
    rate = None
    if started is not None and last is not None and last > started:
        rate = max(0, min(arrived, expected) - warm) / (last - started)
    return Drain(
        expected=expected,
        arrived=arrived,
        stored=count_rows(data_dir, "store"),
        seconds=round(time.monotonic() - began, 1),
        to_analytics_ms=summarize(latencies),
        end_to_end_events_per_second=rate,
    )


def _used(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 3)


UNBOUNDED_HTTP = {"maxConcurrentRequests": -1, "maxOutstandingRequests": -1}
"""The request queue off: what a server sustains is measured without its shedding bound."""


def bench_host_json(http: dict[str, int] | None) -> bytes:
    """The checkout's host.json, with `extensions.http`'s request-queue limits set to `http`.

    None lifts them (`UNBOUNDED_HTTP`): 64 closed-loop connections spread unevenly over the
    instances would otherwise be shed as the app's host.json says (32 outstanding per
    instance), and the run would measure the bound, which the overload scenario does.
    """
    document = orjson.loads((CHECKOUT / "host.json").read_bytes())
    document.setdefault("extensions", {}).setdefault("http", {}).update(http or UNBOUNDED_HTTP)
    return orjson.dumps(document, option=orjson.OPT_INDENT_2)


@contextmanager
def _host(folder: Path, scenario: Scenario, instances: int, http: dict[str, int] | None) -> Iterator[tuple[str, int]]:
    (folder / "host.json").write_bytes(bench_host_json(http))
    data_dir = folder / "data"
    python_path = os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))
    environment = {
        **os.environ,
        **BENCH_SETTINGS,
        **scenario.settings,
        "CLOUDSCALE_DATA_DIR": str(data_dir),
        "PYTHONPATH": python_path,
    }
    command = [sys.executable, "-m", "cloudscale_local.cli.main", "run", "--port", "0"]
    if instances_supported():
        command += ["--instances", str(instances)]
    if quiet_supported():
        # Measured as before the invocation lines, which a benchmark has no reader for.
        command.append("--quiet")
    process = subprocess.Popen(
        command, cwd=folder, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    found: list[str] = []
    ready = threading.Event()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    pumping = threading.Thread(target=pump, daemon=True)
    pumping.start()
    try:
        if not ready.wait(STARTUP_SECONDS) or not found:
            raise RuntimeError("the local host did not start:\n" + "".join(output[-40:]))
        yield found[0], process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        pumping.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
