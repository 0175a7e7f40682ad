"""Latency percentiles: exact nearest rank, merged across workers by pooling the samples."""

from __future__ import annotations

import random
from array import array

import pytest

from cloudscale_local.loadtest.config import LoadConfig
from cloudscale_local.loadtest.generator import build_report
from cloudscale_local.loadtest.latency import LatencyHistogram, LatencySummary, merge_samples, percentile, summarize
from cloudscale_local.loadtest.report import EndToEnd
from cloudscale_local.loadtest.schedule import Schedule
from cloudscale_local.loadtest.worker import WorkerResult


def test_nearest_rank_percentiles_are_real_samples() -> None:
    ordered = [float(n) for n in range(1, 101)]  # 1..100
    assert percentile(ordered, 50) == 50
    assert percentile(ordered, 90) == 90
    assert percentile(ordered, 99) == 99
    assert percentile(ordered, 100) == 100
    assert percentile([7.0], 99) == 7
    assert percentile([1.0, 2.0], 50) == 1
    assert percentile([], 50) is None


def test_a_percentile_outside_0_100_is_refused() -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 0)


def test_summary_of_no_samples_is_empty() -> None:
    assert summarize([]) == LatencySummary(count=0, p50=None, p90=None, p99=None, max=None)


def test_merging_workers_gives_exactly_the_percentiles_of_all_samples() -> None:
    rng = random.Random(7)
    # Two very different workers: one fast, one with a slow tail.
    fast = [rng.uniform(1, 3) for _ in range(900)]
    slow = [rng.uniform(1, 3) for _ in range(80)] + [rng.uniform(200, 400) for _ in range(20)]
    merged = merge_samples([array("d", fast), array("d", slow)])
    assert merged == sorted(fast + slow)
    whole = summarize(fast + slow)
    assert summarize(merged) == whole
    # Averaging the workers' p99s (about 3 and 400) says about 200 ms; the true p99, the
    # 990th of the 1000 samples, is the 10th slowest, somewhere around 300.
    averaged = ((summarize(fast).p99 or 0) + (summarize(slow).p99 or 0)) / 2
    assert whole.p99 == pytest.approx(sorted(fast + slow)[989], abs=0.001)
    assert whole.p99 != pytest.approx(averaged, abs=1)


def test_the_report_pools_every_workers_samples_and_adds_their_counts() -> None:
    config = LoadConfig(duration=2, target_rps=3, workers=2)
    schedule = Schedule(rate=3, duration=2, workers=2)
    first = WorkerResult(
        worker=0,
        scheduled=3,
        sent=3,
        events_sent=3,
        events_accepted=2,
        status_counts={"202": 2, "error": 1},
        error_kinds={"ServerDisconnectedError": 1},
        latencies_ms=array("d", [1.0, 2.0]),
        late_sends=0,
        worst_lag_ms=1.5,
        last_send_offset=1.34,
        wall_seconds=2.1,
        cpu_seconds=0.2,
    )
    second = WorkerResult(
        worker=1,
        scheduled=3,
        sent=3,
        events_sent=3,
        events_accepted=2,
        status_counts={"202": 2, "429": 1},
        latencies_ms=array("d", [3.0, 4.0, 100.0]),
        late_sends=1,
        worst_lag_ms=6.5,
        last_send_offset=1.67,
        wall_seconds=2.2,
        cpu_seconds=0.3,
    )
    report = build_report(
        config, schedule, [first, second], start_wall=1_767_225_600.0, end_to_end=EndToEnd(measured=False)
    )
    assert report.requests_scheduled == 6
    assert report.requests_sent == 6
    assert report.achieved_rps == 3.0
    assert report.events_accepted == 4
    assert report.accepted_events_per_second == 2.0
    assert report.status_counts == {"202": 4, "429": 1, "error": 1}
    assert report.error_kinds == {"ServerDisconnectedError": 1}
    assert report.ingest_latency_ms == summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert report.ingest_latency_ms.max == 100.0
    assert report.behind_schedule.late_sends == 1
    assert report.behind_schedule.worst_lag_ms == 6.5
    assert report.generator_cpu_seconds == 0.5
    assert report.generator_cpu_percent == pytest.approx(0.5 / 2.2 * 100, abs=0.1)
    assert report.started_at == "2026-01-01T00:00:00.000Z"
    # One late send in six is more than 1%: the generator did not keep up.
    assert report.kept_up is False


def test_the_progress_histogram_is_within_one_percent_and_never_below() -> None:
    rng = random.Random(3)
    samples = [rng.lognormvariate(1.5, 1.0) for _ in range(20_000)]
    histogram = LatencyHistogram()
    histogram.add(samples)
    exact = sorted(samples)
    for pct in (50, 90, 99, 99.9):
        estimate = histogram.percentile(pct)
        truth = percentile(exact, pct)
        assert estimate is not None
        assert truth is not None
        assert truth <= estimate <= truth * 1.0101
    assert histogram.count == 20_000


def test_an_empty_histogram_has_no_percentile() -> None:
    assert LatencyHistogram().percentile(99) is None
