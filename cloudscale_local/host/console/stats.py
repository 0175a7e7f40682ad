"""The console's charts, computed from the host's own Prometheus metrics once a second.

`StatsSampler` reads what `/metrics` serves (the totals across instances under `--instances N`)
and turns two readings into the numbers the page draws: per-second rates of the counters,
the ingest p50/p99 of the requests in between (from the histogram's bucket deltas, as
Prometheus' `histogram_quantile` over a `rate`), the mean analytics lag, and the gauges as
they stand. One reading a second serves every open page (`latest()` shares it).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Reading", "StatsSampler", "compute_stats", "parse_reading"]

READ_EVERY_SECONDS = 1.0
_SCOPE_LABELS = frozenset({"otel_scope_name", "otel_scope_schema_url", "otel_scope_version"})

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Reading:
    """Every sample of one reading by (sample name, labels without OpenTelemetry's scope labels)."""

    at: float
    """`time.monotonic()` when it was taken."""
    samples: dict[tuple[str, Labels], float]

    def total(self, name: str, **where: str) -> float:
        """The sum of `name`'s samples whose labels include `where`."""
        return sum(
            value
            for (sample, labels), value in self.samples.items()
            if sample == name and all((key, wanted) in labels for key, wanted in where.items())
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """`name`'s samples summed per value of `label`."""
        found: dict[str, float] = {}
        for (sample, labels), value in self.samples.items():
            if sample == name:
                key = dict(labels).get(label, "")
                found[key] = found.get(key, 0.0) + value
        return found

    def buckets(self, name: str) -> dict[float, float]:
        """A histogram's cumulative bucket counts by upper bound, summed over its series."""
        found: dict[float, float] = {}
        for (sample, labels), value in self.samples.items():
            if sample == f"{name}_bucket":
                bound = float(dict(labels)["le"])
                found[bound] = found.get(bound, 0.0) + value
        return found


def parse_reading(text: bytes, at: float) -> Reading:
    """A `Reading` of Prometheus text."""
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in _SCOPE_LABELS))
            samples[(sample.name, labels)] = sample.value
    return Reading(at, samples)


def compute_stats(previous: Reading | None, current: Reading) -> dict[str, object]:
    """What the page draws, as JSON-ready data: rates since `previous` (zero without one)."""
    seconds = max(current.at - previous.at, 1e-6) if previous is not None else 0.0

    def rate(name: str, **where: str) -> float:
        if previous is None:
            return 0.0
        return max(current.total(name, **where) - previous.total(name, **where), 0.0) / seconds

    def rates_by(name: str, label: str) -> dict[str, float]:
        now = current.by_label(name, label)
        before = previous.by_label(name, label) if previous is not None else now
        return {key: max(value - before.get(key, 0.0), 0.0) / seconds if seconds else 0.0 for key, value in now.items()}

    duration = "cloudscale_ingestion_duration_seconds"
    in_between = _bucket_deltas(previous, current, duration)
    return {
        "at": datetime.now(UTC).isoformat(),
        "ingested": rate("cloudscale_events_ingested_total", outcome="accepted"),
        # Every rejected event, whole refused requests included (by reason; the outcome="rejected"
        # series above counts only the items refused within an accepted batch).
        "rejected": rate("cloudscale_events_rejected_total"),
        "stored": rate("cloudscale_events_processed_total", outcome="stored"),
        "analytics": rate("cloudscale_analytics_rows_total"),
        "ingestP50Ms": _milliseconds(_quantile(in_between, 0.5)),
        "ingestP99Ms": _milliseconds(_quantile(in_between, 0.99)),
        "queueDepth": current.total("cloudscale_queue_depth"),
        "deadLetterDepth": current.total("cloudscale_dead_letter_depth"),
        "analyticsLagMs": _milliseconds(_mean_lag(previous, current)),
        "rateLimited": rates_by("cloudscale_rate_limit_rejections_total", "limit"),
        "fraud": rates_by("cloudscale_fraud_detected_total", "rule"),
        "totals": {
            "ingested": current.total("cloudscale_events_ingested_total", outcome="accepted"),
            "rejected": current.total("cloudscale_events_rejected_total"),
            "stored": current.total("cloudscale_events_processed_total", outcome="stored"),
            "analytics": current.total("cloudscale_analytics_rows_total"),
            "rateLimited": current.by_label("cloudscale_rate_limit_rejections_total", "limit"),
            "fraud": current.by_label("cloudscale_fraud_detected_total", "rule"),
        },
    }


def _bucket_deltas(previous: Reading | None, current: Reading, name: str) -> dict[float, float]:
    now = current.buckets(name)
    if previous is None:
        return {}
    before = previous.buckets(name)
    return {bound: max(count - before.get(bound, 0.0), 0.0) for bound, count in now.items()}


def _quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus' `histogram_quantile`: linear within the bucket the rank falls in; None if empty."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # beyond the last finite bucket: its bound is all that is known
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def _mean_lag(previous: Reading | None, current: Reading) -> float | None:
    """The mean time from receipt to analytics of the rows written in between; None if none were."""
    if previous is None:
        return None
    name = "cloudscale_analytics_lag_seconds"
    count = current.total(f"{name}_count", since="received") - previous.total(f"{name}_count", since="received")
    total = current.total(f"{name}_sum", since="received") - previous.total(f"{name}_sum", since="received")
    return total / count if count > 0 else None


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class StatsSampler:
    """Takes a reading at most once a `READ_EVERY_SECONDS`, whoever asks, and keeps the last stats."""

    def __init__(self, read: Callable[[], Awaitable[bytes]]) -> None:
        self._read = read
        self._lock = asyncio.Lock()
        self._previous: Reading | None = None
        self._stats: dict[str, object] | None = None

    async def latest(self) -> dict[str, object]:
        """The stats of the newest reading, taking a new one if the last is a second old."""
        async with self._lock:
            now = time.monotonic()
            if self._stats is None or self._previous is None or now - self._previous.at >= READ_EVERY_SECONDS * 0.9:
                reading = parse_reading(await self._read(), now)
                self._stats = compute_stats(self._previous, reading)
                self._previous = reading
            return self._stats
