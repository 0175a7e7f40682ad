"""`make bench`: measure every scenario, print the tables, write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from cloudscale_local.bench.harness import BenchOptions, ScenarioResult, instances_supported, run_scenario
from cloudscale_local.bench.report import judge, markdown_report, table_rows
from cloudscale_local.bench.scenarios import SCENARIOS
from cloudscale_local.bench.wrk import WrkMissingError, find_wrk

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of load per scenario.")
    parser.add_argument(
        "--instances", type=int, default=os.cpu_count() or 1, help="Host instances (default: the cores)."
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="Seconds of wrk warm-up on each fresh server.")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (-c).")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (-t).")
    parser.add_argument("--only", nargs="*", choices=[s.key for s in SCENARIOS], help="Run only these scenarios.")
    parser.add_argument("--overload-factor", type=float, default=3.0, help="Overload rate as a multiple of (c).")
    parser.add_argument("--overload-rate", type=float, help="Overload requests/s (instead of a multiple of (c)).")
    parser.add_argument(
        "--max-concurrent-requests", type=int, default=16, help="host.json, overload scenario (as host.json)."
    )
    parser.add_argument(
        "--max-outstanding-requests", type=int, default=32, help="host.json, overload scenario (as host.json)."
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=600.0, help="Most seconds to wait for analytics after the load."
    )
    parser.add_argument("--generator-workers", type=int, default=1, help="Open-loop generator processes.")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"), help="Where to write the report.")
    parser.add_argument("--json-out", type=Path, help="Also write every result as JSON here.")
    args = parser.parse_args(argv)

    console = Console(stderr=True)
    try:
        wrk = find_wrk()
    except WrkMissingError as exc:
        console.print(f"[red]{exc}[/red]")
        return 2
    options = BenchOptions(
        duration=args.duration,
        instances=args.instances,
        threads=args.threads,
        connections=args.connections,
        overload_factor=args.overload_factor,
        overload_rate=args.overload_rate,
        max_concurrent_requests=args.max_concurrent_requests,
        max_outstanding_requests=args.max_outstanding_requests,
        generator_workers=args.generator_workers,
        drain_timeout=args.drain_timeout,
        warmup=args.warmup,
    )
    if not instances_supported():
        console.print("[yellow]this cloudscale run has no --instances: every scenario runs one instance[/yellow]")
    results = _run_all(options, args.only, console)

    table = Table(title="CloudScale benchmark", title_justify="left")
    header, rows = table_rows(results)
    for column in header:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)
    for target, met, measured, margin in judge(results):
        console.print(f"{'met  ' if met else 'SHORT'} {target}: {measured} {margin}")

    machine = _machine(wrk)
    given = " ".join(argv if argv is not None else sys.argv[1:])
    command = f'make bench BENCH_ARGS="{given}"' if given else "make bench"
    args.out.write_text(markdown_report(results, machine=machine, command=command, options=options))
    console.print(f"wrote {args.out}")
    if args.json_out:
        args.json_out.write_bytes(orjson.dumps([result.to_dict() for result in results], option=orjson.OPT_INDENT_2))
    return 0


def _run_all(options: BenchOptions, only: list[str] | None, console: Console) -> list[ScenarioResult]:
    """Every scenario asked for, in order; the overload scenario's rate comes from (c)'s."""
    results: list[ScenarioResult] = []
    capacity: float | None = None
    for scenario in SCENARIOS:
        if only and scenario.key not in only:
            continue
        if scenario.kind == "overload" and capacity is None and options.overload_rate is None:
            console.print(f"[yellow]{scenario.title}: skipped (needs (c) or --overload-rate)[/yellow]")
            continue
        console.print(f"[bold]{scenario.title}[/bold]: {options.duration:g} s ...")
        result = run_scenario(scenario, options, capacity=capacity)
        if scenario.key == "full":
            capacity = result.accepted_events_per_second
        results.append(result)
    return results


def _machine(wrk: str) -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    version = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False).stdout.split("[")[0]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "wrk": version.strip() or "wrk",
    }


if __name__ == "__main__":
    sys.exit(main())
