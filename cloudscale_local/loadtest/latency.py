"""Latency arithmetic: exact percentiles for the report, a cheap histogram for live progress.

The report's percentiles are exact: every worker returns all of its samples and they are
merged before ranking, because averaging per-worker percentiles is wrong (the p99 of two
halves is not the mean of their p99s). The live progress line only needs an estimate, so it
uses a log-bucketed histogram that costs O(1) per sample and O(buckets) per query.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["LatencyHistogram", "LatencySummary", "merge_samples", "percentile", "summarize"]


def percentile(ordered: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence; None when it is empty.

    Nearest rank (the smallest sample with at least `pct`% of samples at or below it) always
    returns a real sample, and matches `cloudscale report`'s lag percentiles.
    """
    if not ordered:
        return None
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {pct}")
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def merge_samples(parts: Iterable[Iterable[float]]) -> list[float]:
    """All samples of all parts in one ascending list (the exact merge across workers)."""
    merged = [sample for part in parts for sample in part]
    merged.sort()
    return merged


@dataclass(frozen=True)
class LatencySummary:
    """Count and percentiles of a set of latencies, in milliseconds (None when empty)."""

    count: int
    p50: float | None
    p90: float | None
    p99: float | None
    max: float | None


def summarize(samples: Iterable[float]) -> LatencySummary:
    """Exact nearest-rank p50/p90/p99 and the maximum of `samples` (ms), rounded to 0.001 ms."""
    ordered = sorted(samples)

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 3)

    return LatencySummary(
        count=len(ordered),
        p50=rounded(percentile(ordered, 50)),
        p90=rounded(percentile(ordered, 90)),
        p99=rounded(percentile(ordered, 99)),
        max=rounded(ordered[-1] if ordered else None),
    )


class LatencyHistogram:
    """Approximate percentiles (within about 1%) of a growing stream of positive latencies."""

    # Bucket k holds (GROWTH**(k-1), GROWTH**k]; a sample is reported as its bucket's upper
    # bound, so an estimate is never below the truth and at most 1% above it.
    GROWTH = 1.01
    _LOG_GROWTH = math.log(GROWTH)
    _FLOOR_MS = 0.001

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self.count = 0

    def add(self, samples: Iterable[float]) -> None:
        """Record latencies in milliseconds."""
        counts = self._counts
        log_growth = self._LOG_GROWTH
        floor = self._FLOOR_MS
        for sample in samples:
            bucket = math.ceil(math.log(max(sample, floor)) / log_growth)
            counts[bucket] = counts.get(bucket, 0) + 1
            self.count += 1

    def percentile(self, pct: float) -> float | None:
        """The nearest-rank percentile estimate in ms; None before the first sample."""
        if not self.count:
            return None
        rank = max(1, math.ceil(pct / 100 * self.count))
        seen = 0
        for bucket in sorted(self._counts):
            seen += self._counts[bucket]
            if seen >= rank:
                return float(self.GROWTH**bucket)
        raise AssertionError("unreachable: the ranks add up to count")  # pragma: no cover
