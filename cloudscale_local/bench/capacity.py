"""The highest rate a scenario sustains: short probes at rising and falling rates.

Offering far more than a server can take measures its collapse (a backlog of sockets and
seconds-long answers), not its capacity. So before the long run at the target rate, each
scenario is probed: a fresh host, a short load at one rate, and a verdict on whether the
host kept up. The rate is bisected geometrically between a low and a high bound until the
step is small. The capacity reported is the highest rate that passed.

A probe passes when, over its short window:

- every request was answered, and with 202 (or an intended 429): no timeouts, no 5xx;
- the server answered within the seed's ingest SLO (p99 at most 200 ms), so requests were
  not piling up in front of it;
- the answers kept pace (the last came within a second of the window's end);
- for the pipeline scenarios, the queue did not grow: at most half a second of the offered
  events were still queued at the end (the process stage kept up with ingest).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from cloudscale_local.bench.harness import ScenarioResult

__all__ = ["Capacity", "Probe", "find_capacity", "probe_verdict"]

INGEST_P99_LIMIT_MS = 200.0
"""The seed's ingest latency SLO."""
ANSWER_LAG_LIMIT_SECONDS = 1.0
QUEUED_SECONDS_LIMIT = 0.5
MIN_QUEUE_ALLOWANCE = 200
"""A floor for the queue check: a few invocations' worth of messages in flight is not growth."""


@dataclass(frozen=True)
class Probe:
    """One short load at `rate` requests/s and its verdict."""

    rate: float
    passed: bool
    reason: str
    events_per_second: float


@dataclass(frozen=True)
class Capacity:
    """The highest passing rate (None if even the lowest failed) and every probe run."""

    rate: float | None
    events_per_second: float | None
    probes: list[Probe]
    at_least: bool
    """True when the highest rate probed passed: the capacity is at least `rate`."""


def probe_verdict(result: ScenarioResult) -> tuple[bool, str]:
    """Whether the host kept up during a probe, and if not, the first reason it did not."""
    report = result.report
    answered = sum(report.status_counts.values()) - report.status_counts.get("error", 0)
    if report.requests_sent == 0 or answered < report.requests_sent:
        return False, f"{report.requests_sent - answered} of {report.requests_sent} requests unanswered"
    errors = {code: n for code, n in report.status_counts.items() if code not in ("202", "429")}
    if errors:
        return False, f"answers other than 202/429: {errors}"
    p99 = report.ingest_latency_ms.p99
    if p99 is None or p99 > INGEST_P99_LIMIT_MS:
        return False, f"ingest p99 {p99 if p99 is None else round(p99, 1)} ms > {INGEST_P99_LIMIT_MS:g} ms"
    lag = report.answered_seconds - report.duration_seconds
    if lag > ANSWER_LAG_LIMIT_SECONDS:
        return False, f"answers ended {lag:.1f} s after the window"
    if result.scenario.end_to_end:
        depth = result.queue_depth_at_end
        offered_events = report.target_rps * report.batch_size
        allowance = max(MIN_QUEUE_ALLOWANCE, QUEUED_SECONDS_LIMIT * offered_events)
        if depth is None or depth > allowance:
            return False, f"queue depth {depth} at the end > {allowance:,.0f} (the process stage fell behind)"
    return True, "kept up"


def find_capacity(
    measure: Callable[[float], ScenarioResult],
    *,
    low: float,
    high: float,
    max_probes: int = 6,
    precision: float = 1.1,
) -> Capacity:
    """Bisect geometrically between `low` and `high` requests/s with `measure(rate)`.

    `high` is tried first: if it passes, the capacity is at least `high` and no more probes
    are run. Otherwise the bisection stops after `max_probes` probes or once the passing and
    failing rates are within a factor of `precision`.
    """
    if not 0 < low < high:
        raise ValueError("need 0 < low < high")
    probes: list[Probe] = []

    def run(rate: float) -> bool:
        result = measure(rate)
        passed, reason = probe_verdict(result)
        probes.append(Probe(rate, passed, reason, result.report.sustained_events_per_second))
        return passed

    if run(high):
        return _capacity(probes, at_least=True)
    passing, failing = None, high
    lower = low
    while len(probes) < max_probes:
        bottom = passing if passing is not None else lower
        if passing is not None and failing / passing <= precision:
            break
        rate = round(math.sqrt(bottom * failing), 1) if passing is not None else lower
        if run(rate):
            passing = rate
        else:
            failing = rate
            if passing is None:
                # Even the low bound failed: go lower still, while probes remain.
                lower = rate / 4
    return _capacity(probes, at_least=False)


def _capacity(probes: list[Probe], *, at_least: bool) -> Capacity:
    passed = [probe for probe in probes if probe.passed]
    best = max(passed, key=lambda probe: probe.rate, default=None)
    return Capacity(
        rate=best.rate if best else None,
        events_per_second=best.events_per_second if best else None,
        probes=probes,
        at_least=at_least,
    )
