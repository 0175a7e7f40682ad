"""`make bench`: measure every scenario, print one table, write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from cloudscale_local.bench.capacity import find_capacity, probe_verdict
from cloudscale_local.bench.harness import ScenarioResult, run_scenario, wait_for_idle
from cloudscale_local.bench.report import markdown_report, table_rows
from cloudscale_local.bench.scenarios import SCENARIOS, Scenario

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of sustained load per scenario.")
    parser.add_argument("--workers", type=int, default=1, help="Generator processes.")
    parser.add_argument("--only", nargs="*", choices=[s.key for s in SCENARIOS], help="Run only these scenarios.")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"), help="Where to write the report.")
    parser.add_argument("--json-out", type=Path, help="Also write every report as JSON here.")
    parser.add_argument(
        "--probe-seconds", type=float, default=10.0, help="Seconds of each capacity probe (0: skip the search)."
    )
    args = parser.parse_args(argv)

    console = Console(stderr=True)
    results: list[ScenarioResult] = []
    for scenario in SCENARIOS:
        if args.only and scenario.key not in args.only:
            continue
        capacity = None
        if args.probe_seconds > 0:
            console.print(f"[bold]{scenario.title}[/bold]: searching for the highest rate it keeps up with ...")
            capacity = find_capacity(
                partial(_probe, scenario, seconds=args.probe_seconds, workers=args.workers, console=console),
                low=scenario.target_rps / 16,
                high=scenario.target_rps,
            )
        console.print(f"[bold]{scenario.title}[/bold]: {scenario.target_rps:g} requests/s for {args.duration:g} s ...")
        result = run_scenario(scenario, duration=args.duration, workers=args.workers)
        results.append(replace(result, capacity=capacity))
        wait_for_idle(2)

    table = Table(title="CloudScale benchmark", title_justify="left")
    header, rows = table_rows(results)
    for column in header:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)

    machine = _machine()
    command = "make bench" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    args.out.write_text(markdown_report(results, machine=machine, command=command, duration=args.duration))
    console.print(f"wrote {args.out}")
    if args.json_out:
        args.json_out.write_bytes(orjson.dumps([result.to_dict() for result in results], option=orjson.OPT_INDENT_2))
    return 0


def _probe(scenario: Scenario, rate: float, seconds: float, workers: int, console: Console) -> ScenarioResult:
    result = run_scenario(scenario, duration=seconds, workers=workers, rate=rate, probe=True)
    passed, reason = probe_verdict(result)
    console.print(f"  {rate:,.1f} requests/s: {'kept up' if passed else reason}")
    wait_for_idle(1)
    return result


def _machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


if __name__ == "__main__":
    sys.exit(main())
