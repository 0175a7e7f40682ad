"""From CPU per event on this machine to Flex Consumption instances and dollars per million events.

The arithmetic of docs/cost.md §1, with the measured CPU in place of its placeholders:

- A 2,048 MB Flex Consumption instance has about 1 core (*Azure Functions Flex Consumption
  plan hosting*, "Instance memory": 512 MB 0.25 core, 2,048 MB 1 core, 4,096 MB 2 cores;
  https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan).
- CPU-bound, an instance serves `cores / CPU per event` events a second, so a rate needs
  `ceil(rate x CPU per event / cores)` instances busy all the time.
- Billed execution time per event, CPU-bound (docs/cost.md, "GB-s per event when instances are
  busy"): memory_GB x CPU per event / cores; at $0.000026 per GB-s, plus $0.40 per million
  executions.

The CPU measured locally includes the embedded backends' SQLite work, which on Azure becomes
network calls that cost the instance waiting, not CPU: the projection is an upper bound for
CPU-bound instances, and a lower bound for none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "EXECUTIONS_PER_EVENT",
    "FLEX_2048_CORES",
    "OTHER_LINES_PER_MILLION",
    "RATES_PER_MINUTE",
    "Projection",
    "functions_cost_per_million",
    "instances_needed",
    "project",
]

FLEX_2048_CORES = 1.0
FLEX_2048_MEMORY_GB = 2.0
PRICE_PER_GB_SECOND = 0.000026
"""docs/cost.md, "Prices used": Functions Flex, on-demand execution time."""
PRICE_PER_MILLION_EXECUTIONS = 0.40
RATES_PER_MINUTE = (10_000, 100_000, 1_000_000)
EXECUTIONS_PER_EVENT = {"single": 2.05, "batched": 1.02}
"""docs/cost.md, summary: 2.05 M executions per million events by default, 1.02 M batched."""
OTHER_LINES_PER_MILLION = {"single": 13.68, "batched": 8.59}
"""docs/cost.md's summary total at 100 M events a month less its two Functions lines
(default 18.6 - 0.82 - 4.10; batched 10.3 - 0.41 - 1.30): Table Storage, Service Bus,
Cosmos DB, Data Explorer and Application Insights, which CPU does not change."""


def instances_needed(events_per_minute: float, cpu_ms_per_event: float, cores: float = FLEX_2048_CORES) -> int:
    """Instances kept CPU-busy by `events_per_minute` at `cpu_ms_per_event` (at least one)."""
    if events_per_minute < 0 or cpu_ms_per_event < 0 or cores <= 0:
        raise ValueError("rates and CPU must be non-negative and cores positive")
    busy_cores = events_per_minute / 60 * cpu_ms_per_event / 1000
    return max(1, math.ceil(busy_cores / cores - 1e-9))


def functions_cost_per_million(
    cpu_ms_per_event: float,
    executions_per_event: float,
    *,
    memory_gb: float = FLEX_2048_MEMORY_GB,
    cores: float = FLEX_2048_CORES,
) -> float:
    """Functions' cost per million events, CPU-bound: execution time (GB-s) plus executions."""
    gb_seconds = memory_gb * cpu_ms_per_event / 1000 / cores * 1_000_000
    return gb_seconds * PRICE_PER_GB_SECOND + executions_per_event * PRICE_PER_MILLION_EXECUTIONS


@dataclass(frozen=True)
class Projection:
    """One way of sending events (single or batched) projected onto Flex Consumption."""

    mode: str
    cpu_ms_per_event: float
    instances: dict[int, int]
    """Events per minute -> 2,048 MB instances."""
    execution_time_per_million: float
    """GB-s of CPU-busy instances per million events, in dollars."""
    functions_per_million: float
    """Execution time plus executions."""
    total_per_million: float
    """Functions plus docs/cost.md's other lines (at 100 M events a month)."""


def project(mode: str, cpu_ms_per_event: float) -> Projection:
    """`mode` is "single" or "batched"."""
    functions = functions_cost_per_million(cpu_ms_per_event, EXECUTIONS_PER_EVENT[mode])
    return Projection(
        mode=mode,
        cpu_ms_per_event=cpu_ms_per_event,
        instances={rate: instances_needed(rate, cpu_ms_per_event) for rate in RATES_PER_MINUTE},
        execution_time_per_million=functions_cost_per_million(cpu_ms_per_event, 0.0),
        functions_per_million=functions,
        total_per_million=functions + OTHER_LINES_PER_MILLION[mode],
    )
