"""The benchmark's table and its markdown report, with each target judged as met or short."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cloudscale_local.bench.harness import ScenarioResult

__all__ = ["Verdict", "judge", "markdown_report", "table_rows"]

ANALYSIS = Path(__file__).with_name("analysis.md")
"""Hand-written notes on where the time goes (profiles), appended to the generated report."""

INGEST_P99_TARGET_MS = 50.0
ANALYTICS_P99_TARGET_MS = 1000.0
INGEST_SHARE_OF_BARE = 0.25

Verdict = tuple[str, bool, str]
"""(target, met, what was measured)."""


def answered_per_second(result: ScenarioResult) -> float:
    """202 answers per second until the last answer: the request throughput the server sustained."""
    report = result.report
    seconds = max(report.duration_seconds, report.answered_seconds)
    return report.status_counts.get("202", 0) / seconds if seconds else 0.0


def table_rows(results: Sequence[ScenarioResult]) -> tuple[list[str], list[list[str]]]:
    header = [
        "scenario",
        "capacity events/s",
        "offered",
        "sustained events/s",
        "202 answers/s",
        "ingest p50 / p99 ms",
        "202 -> analytics p99 ms",
        "reached analytics",
        "queue depth at end",
        "vs bare",
        "host CPU ms/event",
        "generator CPU",
        "generator kept up",
    ]
    bare = next((r for r in results if r.scenario.key == "bare"), None)
    rows: list[list[str]] = []
    for result in results:
        report = result.report
        e2e = report.end_to_end
        latency = report.ingest_latency_ms
        ratio = (
            f"{answered_per_second(result) / answered_per_second(bare):.0%}"
            if bare is not None and answered_per_second(bare)
            else "-"
        )
        rows.append(
            [
                result.scenario.title,
                capacity_text(result),
                f"{report.target_rps:g} req/s x {report.batch_size}",
                f"{report.sustained_events_per_second:,.0f}",
                f"{answered_per_second(result):,.0f}",
                f"{_ms(latency.p50)} / {_ms(latency.p99)}",
                _ms(e2e.to_analytics_ms.p99) if e2e.measured else "-",
                f"{e2e.arrived:,} of {e2e.tracked:,}" if e2e.measured else "-",
                "-" if result.queue_depth_at_end is None else f"{result.queue_depth_at_end:,.0f}",
                ratio,
                _ms(result.host_cpu_ms_per_event, digits=3),
                f"{report.generator_cpu_percent:.0f}% of a core",
                "yes" if report.kept_up else "NO",
            ]
        )
    return header, rows


def capacity_text(result: ScenarioResult) -> str:
    """The highest rate the scenario kept up with, in events/s ("-" when not searched)."""
    capacity = result.capacity
    if capacity is None:
        return "-"
    if capacity.rate is None:
        lowest = min(probe.rate for probe in capacity.probes) * result.scenario.batch_size
        return f"< {lowest:,.0f}"
    events = capacity.rate * result.scenario.batch_size
    return f"{'>= ' if capacity.at_least else ''}{events:,.0f}"


def probe_lines(results: Sequence[ScenarioResult]) -> list[str]:
    """Every capacity probe, as markdown list items."""
    lines: list[str] = []
    for result in results:
        if result.capacity is None:
            continue
        steps = "; ".join(
            f"{probe.rate * result.scenario.batch_size:,.0f} events/s {'kept up' if probe.passed else probe.reason}"
            for probe in result.capacity.probes
        )
        lines.append(f"- {result.scenario.title}: {steps}")
    return lines


def judge(results: Sequence[ScenarioResult]) -> list[Verdict]:
    """Each of the issue's targets that the scenarios run can judge."""
    by_key = {result.scenario.key: result for result in results}
    verdicts: list[Verdict] = []
    full = by_key.get("full")
    if full is not None:
        report, e2e = full.report, full.report.end_to_end
        rate = report.sustained_events_per_second
        verdicts.append(("full pipeline, single events: >= 3,500 events/s sustained", rate >= 3500, f"{rate:,.0f}/s"))
        arrived = e2e.arrived == e2e.tracked and e2e.measured
        verdicts.append(("... and every accepted event in analytics", arrived, f"{e2e.arrived:,} of {e2e.tracked:,}"))
        p99 = report.ingest_latency_ms.p99
        verdicts.append(("... ingest p99 <= 50 ms", p99 is not None and p99 <= INGEST_P99_TARGET_MS, f"{_ms(p99)} ms"))
        e2e_p99 = e2e.to_analytics_ms.p99
        verdicts.append(
            (
                "... 202-to-analytics p99 <= 1 s",
                e2e_p99 is not None and e2e_p99 <= ANALYTICS_P99_TARGET_MS,
                f"{_ms(e2e_p99)} ms",
            )
        )
        errors = {code: n for code, n in report.status_counts.items() if code not in ("202", "429")}
        verdicts.append(("... no errors besides 429", not errors, str(errors or "none")))
        depth = full.queue_depth_at_end
        verdicts.append(("... queue depth bounded at the end", depth is not None and depth < 1000, str(depth)))
    batch = by_key.get("batch")
    if batch is not None:
        e2e = batch.report.end_to_end
        rate = batch.report.sustained_events_per_second
        all_in = e2e.measured and e2e.arrived == e2e.tracked
        verdicts.append(
            (
                "full pipeline, batches of 100: >= 25,000 events/s end to end",
                rate >= 25000 and all_in,
                f"{rate:,.0f}/s sustained at ingest, {e2e.arrived:,} of {e2e.tracked:,} in analytics",
            )
        )
    bare, ingest = by_key.get("bare"), by_key.get("ingest")
    if bare is not None and ingest is not None and answered_per_second(bare):
        share = answered_per_second(ingest) / answered_per_second(bare)
        verdicts.append(("ingest only: >= 25% of the bare endpoint", share >= INGEST_SHARE_OF_BARE, f"{share:.0%}"))
    return verdicts


def markdown_report(
    results: Sequence[ScenarioResult], *, machine: dict[str, str], command: str, duration: float
) -> str:
    header, rows = table_rows(results)
    lines = [
        "# Benchmarks",
        "",
        f"Measured {machine['date']} by `{command}`, on {machine['cores']} cores ({machine['cpu']}), "
        f"{machine['system']}, Python {machine['python']}. The load generator (`cloudscale loadtest`, open loop, "
        "constant arrival rate) runs on the same machine as the host, over loopback. Each scenario gets a fresh "
        "`cloudscale run` with the benchmark settings (`cloudscale_local/bench/scenarios.py`) and "
        f"{duration:g} s of sustained load after a short warm-up.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "Capacity is the highest offered rate at which the host kept up in a short probe on a fresh host (every "
        "request answered with 202, ingest p99 at most 200 ms, answers keeping pace, and for the pipeline "
        "scenarios a queue that did not grow); see `cloudscale_local/bench/capacity.py`. The other columns are the "
        "long run at the target rate, which may be far above capacity: then they measure an overloaded server.",
        "",
        "The local host runs the triggers as one Azure Functions instance would: the process stage (cardinality "
        "many) one batch of up to `maxMessageBatchSize` at a time with no lock renewal, the change feed one batch "
        "at a time per lease. On Azure, more throughput comes from more instances (target-based scaling), which "
        "one machine does not model: these are one instance's numbers.",
        "",
        *(["Probes:", "", *probe_lines(results), ""] if probe_lines(results) else []),
        "## Targets",
        "",
        "| target | met | measured |",
        "|---|---|---|",
        *(f"| {target} | {'yes' if met else '**short**'} | {measured} |" for target, met, measured in judge(results)),
        "",
    ]
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    return "\n".join(lines)


def _ms(value: float | None, *, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"
