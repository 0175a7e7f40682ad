"""wrk, the closed-loop HTTP load generator in C, driven with the package's Lua script.

A Python generator on the same two cores spends about as much CPU per request as the server
it measures, so the single-event scenarios use wrk (Debian package `wrk`): one thread and
64 connections (`wrk -t1 -c64 --latency`) keep the server busy for a fraction of a core.
The script (`wrk_events.lua`) posts events of the load test's mix, each with a fresh
`eventId`, from rotating client addresses, and prints a JSON summary (answers by status,
events accepted) that `parse_output` reads beside wrk's own text.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cloudscale_local.loadtest.events import build_templates

__all__ = ["WRK_INSTALL_HINT", "WrkMissingError", "WrkResult", "command_line", "find_wrk", "parse_output", "run_wrk"]

SCRIPT = Path(__file__).with_name("wrk_events.lua")
WRK_INSTALL_HINT = (
    "make bench needs wrk (https://github.com/wg/wrk) on PATH. Install it with "
    "`sudo apt-get install wrk` (Debian, Ubuntu) or `brew install wrk` (macOS)."
)
SUMMARY_MARKER = "CLOUDSCALE_WRK "
WRITE_KEY_VARIABLE = "CLOUDSCALE_WRITE_KEY"
"""The environment variable the script reads its write key from (empty or unset: none)."""
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


class WrkMissingError(RuntimeError):
    """wrk is not installed (or not on PATH)."""


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured: its text output read back into numbers."""

    requests: int
    duration_seconds: float
    requests_per_second: float
    latency_ms: dict[str, float]
    """Percentiles of wrk's `--latency` distribution: keys "50", "75", "90", "99"."""
    socket_errors: dict[str, int] = field(default_factory=dict)
    """connect, read, write, timeout (absent from wrk's output: all zero)."""
    non_2xx: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    """Answers by HTTP status, from the script's summary line."""
    accepted_events: int = 0
    """Events the 202 answers accepted (their `accepted` count)."""
    cpu_seconds: float | None = None
    """wrk's own CPU (user + system) over the run: the generator's share of the machine."""

    @property
    def accepted_events_per_second(self) -> float:
        return self.accepted_events / self.duration_seconds if self.duration_seconds else 0.0

    @property
    def errors(self) -> dict[str, int]:
        """Everything but 202 and 429: other statuses and socket errors, by kind."""
        found = {status: n for status, n in self.statuses.items() if status not in ("202", "429")}
        found.update({f"socket {kind}": n for kind, n in self.socket_errors.items() if n})
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "durationSeconds": self.duration_seconds,
            "requestsPerSecond": self.requests_per_second,
            "latencyMs": self.latency_ms,
            "socketErrors": self.socket_errors,
            "non2xx": self.non_2xx,
            "statuses": self.statuses,
            "acceptedEvents": self.accepted_events,
            "cpuSeconds": self.cpu_seconds,
        }


def find_wrk() -> str:
    """The path of wrk, or `WrkMissingError` saying how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise WrkMissingError(WRK_INSTALL_HINT)
    return found


def run_wrk(
    url: str,
    *,
    duration: float,
    threads: int = 1,
    connections: int = 64,
    batch_size: int = 1,
    addresses: int = 25_000,
    timeout_seconds: float = 10.0,
    write_key: str | None = None,
) -> WrkResult:
    """Run `wrk -t{threads} -c{connections} -d{duration}s --latency` with the events script against `url`.

    `write_key`: sent as `Authorization: Bearer` (handed to the script in its environment, not on
    the command line where `ps` shows it); the events then name no tenant.
    """
    wrk = find_wrk()
    with tempfile.TemporaryDirectory(prefix="cloudscale-wrk-") as folder:
        templates = write_templates(Path(folder) / "events.jsonl", keyed=write_key is not None)
        prefix = id_prefix()
        command = [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            f"--timeout={max(1, round(timeout_seconds))}s",
            "--latency",
            "-s",
            str(SCRIPT),
            url,
            "--",
            str(templates),
            str(addresses),
            str(batch_size),
            prefix,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        environment = {**os.environ, WRITE_KEY_VARIABLE: write_key or ""}
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 120, check=False, env=environment
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr.strip() or completed.stdout}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dataclasses.replace(parse_output(completed.stdout), cpu_seconds=round(cpu, 3))


def write_templates(path: Path, *, keyed: bool = False) -> Path:
    """The script's event templates (the load test's mix, no `eventId`), one JSON object a line.

    `keyed`: without `tenantId`, for a load that sends a write key (its tenant is filled in).
    """
    events = build_templates(10)
    if keyed:
        events = [{name: value for name, value in event.items() if name != "tenantId"} for event in events]
    path.write_bytes(b"\n".join(orjson.dumps(event) for event in events) + b"\n")
    return path


def id_prefix() -> str:
    """A fresh UUID's first four groups: the ids of one run never meet those of another."""
    return str(uuid.uuid4())[:23]


def parse_output(text: str) -> WrkResult:
    """Read wrk's `--latency` output (and the script's summary line, when present) into numbers."""
    requests_match = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text, re.MULTILINE)
    rate_match = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    if requests_match is None or rate_match is None:
        raise ValueError("not wrk output: no 'requests in' or 'Requests/sec' line")
    duration = float(requests_match.group(2)) * _UNITS_MS[requests_match.group(3)] / 1000
    latency = {
        match.group(1): _ms(match.group(2), match.group(3))
        for match in re.finditer(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)
    }
    socket_errors: dict[str, int] = {}
    errors_match = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text, re.MULTILINE
    )
    if errors_match is not None:
        socket_errors = dict(zip(("connect", "read", "write", "timeout"), map(int, errors_match.groups()), strict=True))
    non_2xx_match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    statuses: dict[str, int] = {}
    accepted = 0
    for line in text.splitlines():
        if line.startswith(SUMMARY_MARKER):
            summary = orjson.loads(line[len(SUMMARY_MARKER) :])
            statuses = {str(key): int(value) for key, value in sorted(summary["statuses"].items())}
            accepted = int(summary["acceptedEvents"])
    return WrkResult(
        requests=int(requests_match.group(1)),
        duration_seconds=round(duration, 3),
        requests_per_second=float(rate_match.group(1)),
        latency_ms=latency,
        socket_errors=socket_errors,
        non_2xx=int(non_2xx_match.group(1)) if non_2xx_match else 0,
        statuses=statuses,
        accepted_events=accepted,
    )


def _ms(value: str, unit: str) -> float:
    return round(float(value) * _UNITS_MS[unit], 3)


def command_line(threads: int, connections: int, duration: float, batch_size: int) -> str:
    """The wrk command as the report shows it."""
    return (
        f"CLOUDSCALE_WRITE_KEY=<key> wrk -t{threads} -c{connections} -d{max(1, round(duration))}s --latency "
        f"-s cloudscale_local/bench/wrk_events.lua <url> -- <events> <addresses> {batch_size} <id prefix>"
    )


def main(argv: list[str] | None = None) -> int:
    """Write the templates to a file and print the wrk command that posts them: the bench's load, by hand."""
    parser = argparse.ArgumentParser(prog="python -m cloudscale_local.bench.wrk", description=main.__doc__)
    parser.add_argument("templates", type=Path, help="Where to write the event templates (JSON lines).")
    parser.add_argument("--url", default="http://127.0.0.1:7071/api/events")
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args(argv)
    write_templates(args.templates)
    print(
        f"wrk -t1 -c64 -d{args.duration}s --latency -s {SCRIPT} {args.url} -- "
        f"{args.templates} 25000 {args.batch_size} {id_prefix()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
