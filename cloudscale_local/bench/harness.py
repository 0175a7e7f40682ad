"""Runs the benchmark: each scenario against its own fresh local host, one after another.

Every scenario starts `cloudscale run` on a free loopback port with a fresh data folder and
the benchmark settings, lets it warm up, offers the scenario's load with `cloudscale
loadtest`'s open-loop generator for `duration` seconds, reads the queue depth at the end,
and stops the host. The same HTTP server stack serves every scenario, the bare endpoint
included, so the ratios compare like with like.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudscale_local.bench.scenarios import BENCH_SETTINGS, Scenario
from cloudscale_local.loadtest import LoadConfig, LoadReport, run_load

if TYPE_CHECKING:
    from cloudscale_local.bench.capacity import Capacity

__all__ = ["ScenarioResult", "run_scenario"]

STARTUP_SECONDS = 60
WARMUP_SECONDS = 3


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    report: LoadReport
    queue_depth_at_end: float | None
    capacity: Capacity | None = None
    """The capacity search's outcome, when one was run before the measured run."""
    host_cpu_seconds: float | None = None
    """CPU the host process used during the measured run (its drain included)."""

    @property
    def host_cpu_ms_per_event(self) -> float | None:
        """Host CPU per accepted event: what one event costs the host, all stages it ran."""
        accepted = self.report.events_accepted
        if not self.host_cpu_seconds or not accepted:
            return None
        return self.host_cpu_seconds * 1000 / accepted

    def to_dict(self) -> dict[str, Any]:
        capacity = None
        if self.capacity is not None:
            capacity = {
                "requestsPerSecond": self.capacity.rate,
                "eventsPerSecond": self.capacity.events_per_second,
                "atLeast": self.capacity.at_least,
                "probes": [
                    {"requestsPerSecond": p.rate, "passed": p.passed, "reason": p.reason} for p in self.capacity.probes
                ],
            }
        return {
            "scenario": self.scenario.key,
            "queueDepthAtEnd": self.queue_depth_at_end,
            "capacity": capacity,
            "hostCpuSeconds": self.host_cpu_seconds,
            **self.report.to_dict(),
        }


def run_scenario(
    scenario: Scenario, *, duration: float, workers: int, rate: float | None = None, probe: bool = False
) -> ScenarioResult:
    """Start a host for `scenario`, load it, and return what was measured.

    `rate` replaces the scenario's offered rate. A `probe` skips the end-to-end latencies
    (they wait for the queue to drain); the queue depth at the end is still read.
    """
    target_rps = scenario.target_rps if rate is None else rate
    data_dir = Path(tempfile.mkdtemp(prefix=f"cloudscale-bench-{scenario.key}-"))
    try:
        with _host(data_dir, scenario) as (url, pid):
            warm = LoadConfig(
                url=url,
                duration=WARMUP_SECONDS,
                target_rps=min(200.0, target_rps),
                path=scenario.path,
                batch_size=scenario.batch_size,
                workers=1,
                data_dir=None,
            )
            run_load(warm)
            config = LoadConfig(
                url=url,
                duration=duration,
                target_rps=target_rps,
                path=scenario.path,
                batch_size=scenario.batch_size,
                ips=scenario.ips,
                workers=workers,
                data_dir=data_dir if scenario.end_to_end and not probe else None,
            )
            cpu_before = _cpu_seconds(pid)
            report = run_load(config, on_progress=None)
            depth = _queue_depth(url)
            cpu_after = _cpu_seconds(pid)
            cpu_used = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
        return ScenarioResult(scenario, report, depth, host_cpu_seconds=cpu_used)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def _host(data_dir: Path, scenario: Scenario) -> Iterator[tuple[str, int]]:
    environment = {**os.environ, **BENCH_SETTINGS, **scenario.settings, "CLOUDSCALE_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "cloudscale_local.cli.main", "run", "--port", "0"]
    if scenario.bare_endpoint:
        command.append("--bare-endpoint")
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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

    threading.Thread(target=pump, daemon=True).start()
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


def _cpu_seconds(pid: int) -> float | None:
    """User plus system CPU the process used so far (Linux /proc; None where it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _queue_depth(url: str) -> float | None:
    """`cloudscale_queue_depth` from the host's /metrics, or None if it is not there."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:  # loopback only
            text = response.read().decode()
    except OSError:
        return None
    match = re.search(r"^cloudscale_queue_depth\{[^}]*\} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def wait_for_idle(seconds: float) -> None:
    """A pause between scenarios, so one host's shutdown does not overlap the next one's load."""
    time.sleep(seconds)
