"""The benchmark's tables and its markdown report, each target judged met or short, and by how much."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cloudscale_local.bench.harness import BenchOptions, ScenarioResult
from cloudscale_local.bench.projection import FLEX_2048_CORES, RATES_PER_MINUTE, Projection, project
from cloudscale_local.bench.wrk import command_line

__all__ = ["Verdict", "judge", "markdown_report", "overload_rows", "stage_cpu", "table_rows"]

ANALYSIS = Path(__file__).with_name("analysis.md")
"""Hand-written notes (method, profiles, what would close the gaps), appended to the generated report."""

Verdict = tuple[str, bool, str, str]
"""(target, met, what was measured, by how much)."""

MEMORY_GROWTH_LIMIT = 1.2
"""Resident memory counts as flat when its peak over the second half of the load is within 20%
of its peak over the first half (start-up allocation is not growth; a leak or a queue is)."""
QUEUE_BOUND = 1000


def table_rows(results: Sequence[ScenarioResult]) -> tuple[list[str], list[list[str]]]:
    """The per-scenario table: one row per scenario."""
    header = [
        "scenario",
        "instances",
        "requests/s",
        "accepted events/s",
        "ingest p50 / p99 ms",
        "202 -> analytics p99 ms",
        "end-to-end events/s",
        "in analytics / accepted",
        "queue at end",
        "errors",
        "vs bare",
        "CPU ms/event",
        "generator CPU",
    ]
    bare = next((r for r in results if r.scenario.key == "bare" and r.wrk), None)
    rows: list[list[str]] = []
    for result in results:
        drain = result.drain
        if result.wrk is not None:
            rps = result.wrk.requests_per_second
            p50, p99 = result.wrk.latency_ms.get("50"), result.wrk.latency_ms.get("99")
            errors = result.wrk.errors
        elif result.load is not None:
            # Answers per second until the last one came back (what the server answered, not what was sent).
            answered = sum(n for status, n in result.load.status_counts.items() if status != "error")
            rps = answered / max(result.load.duration_seconds, result.load.answered_seconds, 1e-9)
            accepted = result.load.latency_by_status_ms.get("202")
            p50, p99 = (accepted.p50, accepted.p99) if accepted else (None, None)
            errors = {k: n for k, n in result.load.status_counts.items() if k not in ("202", "429", "503")}
        else:  # pragma: no cover - every scenario has one or the other
            continue
        ratio = "-"
        if bare is not None and bare.wrk is not None and result.wrk is not None and bare.wrk.requests_per_second:
            ratio = f"{result.wrk.requests_per_second / bare.wrk.requests_per_second:.0%}"
        rows.append(
            [
                result.scenario.title,
                str(result.instances),
                f"{rps:,.0f}",
                f"{result.accepted_events_per_second:,.0f}",
                f"{_num(p50)} / {_num(p99)}",
                _num(drain.to_analytics_ms.p99) if drain else "-",
                _num(drain.end_to_end_events_per_second, 0) if drain else "-",
                f"{drain.arrived:,} / {drain.expected:,}" if drain else "-",
                "-" if result.queue_depth_at_end is None else f"{result.queue_depth_at_end:,.0f}",
                ", ".join(f"{k}: {n}" for k, n in errors.items()) or "none",
                ratio,
                _num(result.cpu_ms_per_event, 3),
                _generator_cpu(result),
            ]
        )
    return header, rows


def overload_rows(result: ScenarioResult) -> list[tuple[str, str]]:
    """The overload scenario's own figures, as (what, measured) pairs."""
    load = result.load
    if load is None:
        return []
    by_status = load.latency_by_status_ms
    refused = {k: v for k, v in by_status.items() if k in ("429", "503")}
    memory = result.memory_mb
    rows = [
        (
            "offered (open loop)",
            f"{result.offered_rps or load.target_rps:,.0f} requests/s for {load.duration_seconds:g} s",
        ),
        ("answers", ", ".join(f"{k}: {n:,}" for k, n in load.status_counts.items()) or "none"),
        ("202 p50 / p99 ms", _pair(by_status.get("202"))),
        *((f"{k} p50 / p99 ms", _pair(v)) for k, v in refused.items()),
        ("generator kept up", "yes" if load.kept_up else f"no: {load.fell_behind_reason()}"),
    ]
    if memory:
        rows.append(
            (
                "host resident memory, MB (first / peak / last)",
                f"{memory[0]:,.0f} / {max(memory):,.0f} / {memory[-1]:,.0f}",
            )
        )
    if result.drain is not None:
        rows.append(("events stored / answered 202", f"{result.drain.stored:,} / {result.drain.expected:,}"))
    return rows


def stage_cpu(results: Sequence[ScenarioResult]) -> list[tuple[str, float]]:
    """CPU ms per event by stage: ingest from (b), process + change feed as (c) minus (b)."""
    by_key = {r.scenario.key: r.cpu_ms_per_event for r in results}
    stages: list[tuple[str, float]] = []
    ingest, full, batch = by_key.get("ingest"), by_key.get("full"), by_key.get("batch")
    if ingest is not None:
        stages.append(("ingest (b)", ingest))
    ingest_open = by_key.get("ingest_open")
    if ingest is not None and ingest_open is not None:
        stages.append(("write-key authentication ((b) - (b'))", ingest - ingest_open))
    if ingest is not None and full is not None:
        stages.append(("process + change feed ((c) - (b))", full - ingest))
    if full is not None:
        stages.append(("whole pipeline, single events (c)", full))
    if batch is not None:
        stages.append(("whole pipeline, batches of 100 (d)", batch))
    return stages


def projections(results: Sequence[ScenarioResult]) -> list[Projection]:
    by_key = {r.scenario.key: r.cpu_ms_per_event for r in results}
    found = []
    for key, mode in (("full", "single"), ("batch", "batched")):
        cpu = by_key.get(key)
        if cpu is not None:
            found.append(project(mode, cpu))
    return found


def judge(results: Sequence[ScenarioResult]) -> list[Verdict]:
    """Each of the targets that the scenarios run can judge."""
    by_key = {result.scenario.key: result for result in results}
    verdicts: list[Verdict] = []
    full = by_key.get("full")
    if full is not None and full.wrk is not None and full.drain is not None:
        rate = full.accepted_events_per_second
        verdicts.append(_at_least("full pipeline, single events: >= 3,500 events/s accepted", rate, 3500, "/s"))
        drain = full.drain
        verdicts.append(
            (
                "... every accepted event in analytics",
                drain.arrived >= drain.expected,
                f"{drain.arrived:,} of {drain.expected:,}",
                "" if drain.arrived >= drain.expected else f"{drain.expected - drain.arrived:,} missing",
            )
        )
        verdicts.append(_at_most("... ingest p99 <= 50 ms", full.wrk.latency_ms.get("99"), 50, " ms"))
        verdicts.append(_at_most("... 202-to-analytics p99 <= 1 s", drain.to_analytics_ms.p99, 1000, " ms"))
        errors = full.wrk.errors
        verdicts.append(("... no errors", not errors, str(errors or "none"), ""))
        depth = full.queue_depth_at_end
        verdicts.append(_at_most(f"... queue depth bounded at the end (< {QUEUE_BOUND:,})", depth, QUEUE_BOUND, ""))
    batch = by_key.get("batch")
    if batch is not None and batch.drain is not None:
        rate = batch.drain.end_to_end_events_per_second or 0.0
        verdicts.append(_at_least("full pipeline, batches of 100: >= 25,000 events/s end to end", rate, 25000, "/s"))
    bare, ingest = by_key.get("bare"), by_key.get("ingest")
    if bare and ingest and bare.wrk and ingest.wrk and bare.wrk.requests_per_second:
        share = ingest.wrk.requests_per_second / bare.wrk.requests_per_second
        verdicts.append(
            (
                "ingest only: >= 25% of the bare ASGI app's requests/s",
                share >= 0.25,
                f"{share:.1%}",
                _margin(share, 0.25, higher_is_better=True),
            )
        )
    overload = by_key.get("overload")
    if overload is not None and overload.load is not None:
        by_status = overload.load.latency_by_status_ms
        accepted = by_status.get("202")
        verdicts.append(_at_most("overload: p99 of the 202s <= 200 ms", accepted.p99 if accepted else None, 200, " ms"))
        refused = [v.p99 for k, v in by_status.items() if k in ("429", "503") and v.p99 is not None]
        verdicts.append(
            _at_most("... the excess answered 429/503 within 50 ms (p99)", max(refused) if refused else None, 50, " ms")
        )
        memory = overload.memory_mb
        if len(memory) >= 2:
            half = len(memory) // 2
            first, second = max(memory[:half]), max(memory[half:])
            growth = second / first
            verdicts.append(
                (
                    "... resident memory flat (second half's peak within 20% of the first half's)",
                    growth <= MEMORY_GROWTH_LIMIT,
                    f"{first:,.0f} -> {second:,.0f} MB",
                    f"x{growth:.2f}",
                )
            )
        if overload.drain is not None:
            kept = overload.drain.stored >= overload.drain.expected
            verdicts.append(
                (
                    "... nothing answered 202 lost (event store count)",
                    kept,
                    f"{overload.drain.stored:,} stored of {overload.drain.expected:,} answered 202",
                    "" if kept else f"{overload.drain.expected - overload.drain.stored:,} missing",
                )
            )
    return verdicts


def markdown_report(
    results: Sequence[ScenarioResult], *, machine: dict[str, str], command: str, options: BenchOptions
) -> str:
    """docs/benchmarks.md: generated tables, then the hand-written analysis."""
    header, rows = table_rows(results)
    wrk = command_line(options.threads, options.connections, options.duration, 1)
    overload = next((r for r in results if r.scenario.key == "overload"), None)
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `make bench` (cloudscale_local/bench/); the prose after the tables is",
        "     cloudscale_local/bench/analysis.md. -->",
        "",
        "## Machine and commands",
        "",
        f"- Measured {machine['date']} by `{command}`.",
        f"- {machine['cores']} cores ({machine['cpu']}), {machine['system']}, Python {machine['python']}, "
        f"{machine.get('wrk', 'wrk')}.",
        f"- (a) to (d): `{wrk}` (batch size 100 for (d)), after a {options.warmup:g} s warm-up with the same "
        "command, on the same machine as the server; a fresh server and data folder for each.",
        f"- Host instances: {options.instances} (`cloudscale run --instances`; the table's column shows what "
        "ran); the bare ASGI app runs as many worker processes.",
        f"- (e): one instance, `cloudscale loadtest` (open loop) at {options.overload_factor:g}x its share of (c)'s "
        "accepted events/s ((c) divided by its instances), with "
        f"`extensions.http.maxConcurrentRequests` {options.max_concurrent_requests} and `maxOutstandingRequests` "
        f"{options.max_outstanding_requests} in the bench copy of host.json.",
        "",
        "## Scenarios",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]
    if overload is not None and overload.load is not None:
        lines += [
            "### Overload",
            "",
            "| | measured |",
            "|---|---|",
            *(f"| {what} | {value} |" for what, value in overload_rows(overload)),
            "",
        ]
    lines += [
        "## Targets",
        "",
        "| target | met | measured | by how much |",
        "|---|---|---|---|",
        *(
            f"| {target} | {'yes' if met else '**short**'} | {measured} | {margin} |"
            for target, met, measured, margin in judge(results)
        ),
        "",
        "## CPU per event, by stage",
        "",
        "| stage | CPU ms per event |",
        "|---|---:|",
        *(f"| {stage} | {cpu:.3f} |" for stage, cpu in stage_cpu(results)),
        "",
    ]
    found = projections(results)
    if found:
        rates = " | ".join(f"{rate:,}/min" for rate in RATES_PER_MINUTE)
        lines += [
            "## Azure projection (Flex Consumption, 2,048 MB)",
            "",
            f"Instances kept CPU-busy at {FLEX_2048_CORES:g} core each for 10k, 100k and 1M events a minute, "
            "and the cost per million events with docs/cost.md's prices (`cloudscale_local/bench/projection.py`; "
            'see "Reading the Azure projection" below).',
            "",
            f"| sending | CPU ms/event | {rates} | execution time $/M | Functions $/M (with executions) "
            "| total $/M (at 100 M/month) |",
            "|---|---:|" + "---:|" * len(RATES_PER_MINUTE) + "---:|---:|---:|",
            *(
                f"| {p.mode} | {p.cpu_ms_per_event:.3f} | "
                + " | ".join(str(p.instances[rate]) for rate in RATES_PER_MINUTE)
                + f" | {p.execution_time_per_million:.3f} | {p.functions_per_million:.2f} | {p.total_per_million:.2f} |"
                for p in found
            ),
            "",
        ]
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(lines)


def _at_least(target: str, value: float, floor: float, unit: str) -> Verdict:
    return (target, value >= floor, f"{value:,.0f}{unit}", _margin(value, floor, higher_is_better=True))


def _at_most(target: str, value: float | None, ceiling: float, unit: str) -> Verdict:
    if value is None:
        return (target, False, "not measured", "")
    return (target, value <= ceiling, f"{value:,.1f}{unit}", _margin(value, ceiling, higher_is_better=False))


def _margin(value: float, target: float, *, higher_is_better: bool) -> str:
    """ "x1.40 the target" when met or short; the ratio always reads measured / target."""
    if target == 0:
        return ""
    ratio = value / target
    met = ratio >= 1 if higher_is_better else ratio <= 1
    if met:
        return f"met (x{ratio:.2f} of the target)"
    return f"short: x{ratio:.2f} of the target"


def _generator_cpu(result: ScenarioResult) -> str:
    """The load generator's CPU as a share of one core over its run."""
    if result.wrk is not None and result.wrk.cpu_seconds is not None and result.wrk.duration_seconds:
        return f"{result.wrk.cpu_seconds / result.wrk.duration_seconds:.0%} of a core"
    if result.load is not None:
        return f"{result.load.generator_cpu_percent:.0f}% of a core"
    return "-"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pair(summary: object) -> str:
    if summary is None:
        return "-"
    return f"{_num(getattr(summary, 'p50', None))} / {_num(getattr(summary, 'p99', None))}"
