"""The result of a run: `LoadReport` and its parts, JSON-ready, with the verdict on the generator."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cloudscale_local.loadtest.latency import LatencySummary

__all__ = ["BehindSchedule", "EndToEnd", "LoadReport", "camel_case_keys", "judge_kept_up"]

MIN_ACHIEVED_SHARE = 0.95
"""Below this share of the target rate the generator did not keep up."""
MAX_LATE_SHARE = 0.01
"""Above this share of sends started late the generator did not keep up."""


@dataclass(frozen=True)
class BehindSchedule:
    """How far the generator itself lagged its schedule."""

    late_sends: int
    """Sends that started more than `threshold_ms` after they were due."""
    worst_lag_ms: float
    threshold_ms: float
    in_flight_cap_hits: int
    """Sends held back because the cap on unanswered requests was reached (counted late too)."""
    skipped: int
    """Scheduled requests never sent: the run's window closed before the generator got to them."""


@dataclass(frozen=True)
class EndToEnd:
    """Latency from the 202 answer to the event being stored, and to it being in analytics.

    Both from the local analytics store's `StoredAt` and `AnalyticsAt` (the host's wall clock,
    the same machine's as the generator's), minus the wall time at which the 202 arrived.
    A value can be slightly negative: the pipeline may store an event before its 202 has
    reached the generator.
    """

    measured: bool
    reason: str | None = None
    """Why nothing was measured (no data folder, no analytics store, nothing accepted)."""
    tracked: int = 0
    """Accepted events followed to the store."""
    sampled: bool = False
    """True when only every n-th request's events were followed (very large runs)."""
    arrived: int = 0
    missing: int = 0
    """Followed events that did not reach analytics within the drain time."""
    waited_seconds: float = 0.0
    to_stored_ms: LatencySummary = field(default_factory=lambda: LatencySummary(0, None, None, None, None))
    to_analytics_ms: LatencySummary = field(default_factory=lambda: LatencySummary(0, None, None, None, None))


@dataclass(frozen=True)
class LoadReport:
    """What one run measured. `to_dict()` is its JSON form (camelCase keys)."""

    url: str
    started_at: str
    """RFC 3339 UTC time at which the first request was due."""
    duration_seconds: float
    target_rps: float
    batch_size: int
    workers: int
    ips: int
    tenants: int
    requests_scheduled: int
    requests_sent: int
    achieved_rps: float
    """Requests sent per second of the sending window."""
    events_sent: int
    events_accepted: int
    """Events the 202 answers accepted."""
    accepted_events_per_second: float
    status_counts: dict[str, int]
    """Answers by HTTP status (`"202"`, `"429"`, ...) and `error` for transport failures and timeouts."""
    error_kinds: dict[str, int]
    """Transport failures by exception type."""
    ingest_latency_ms: LatencySummary
    """Send to response, over every answered request (any status)."""
    behind_schedule: BehindSchedule
    kept_up: bool
    """False when the generator could not hold the rate: the numbers then measure the generator."""
    generator_cpu_seconds: float
    generator_cpu_percent: float
    """CPU of all workers over the sending time, as a percentage of one core."""
    end_to_end: EndToEnd
    answered_seconds: float = 0.0
    """From the first scheduled send to the last answer: longer than the window when the
    service queued requests (overload)."""
    sustained_events_per_second: float = 0.0
    """Accepted events per second of `answered_seconds` (or of the window, if longer): what
    the service really took, not what it was offered."""
    latency_by_status_ms: dict[str, LatencySummary] = field(default_factory=dict)
    """Send to response by HTTP status: how fast the 202s came, and how fast the refusals."""

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data with camelCase keys (status codes stay as they are)."""
        data: dict[str, Any] = camel_case_keys(dataclasses.asdict(self), keep={"statusCounts", "errorKinds"})
        return data

    def fell_behind_reason(self) -> str | None:
        """Why the generator did not keep up, in words; None when it did."""
        if self.kept_up:
            return None
        late = self.behind_schedule
        parts = []
        if self.achieved_rps < MIN_ACHIEVED_SHARE * self.target_rps:
            parts.append(f"it sent {self.achieved_rps:.1f} requests/s of the {self.target_rps:g} asked")
        if late.late_sends:
            parts.append(
                f"{late.late_sends} of {self.requests_sent} sends started more than {late.threshold_ms:g} ms late"
                f" (worst {late.worst_lag_ms:.1f} ms)"
            )
        if late.in_flight_cap_hits:
            parts.append(f"the cap on requests in flight held back {late.in_flight_cap_hits} sends")
        if late.skipped:
            parts.append(f"{late.skipped} scheduled requests were never sent")
        return "; ".join(parts)


def judge_kept_up(*, target_rps: float, achieved_rps: float, requests_sent: int, late_sends: int) -> bool:
    """The verdict: at least 95% of the rate, and at most 1% of sends more than 5 ms late."""
    if achieved_rps < MIN_ACHIEVED_SHARE * target_rps:
        return False
    return late_sends <= MAX_LATE_SHARE * max(1, requests_sent)


def camel_case_keys(value: Any, *, keep: frozenset[str] | set[str] = frozenset()) -> Any:
    """`value` with every dict key in camelCase; the values under `keep` keys are left alone."""
    if isinstance(value, dict):
        converted = {}
        for key, item in value.items():
            name = _camel(key)
            converted[name] = item if name in keep else camel_case_keys(item, keep=keep)
        return converted
    if isinstance(value, list | tuple):
        return [camel_case_keys(item, keep=keep) for item in value]
    return value


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
