"""The capacity search and its probe verdicts, from synthetic load reports (no load is run here)."""

from __future__ import annotations

import pytest

from cloudscale_local.bench.capacity import find_capacity, probe_verdict
from cloudscale_local.bench.harness import ScenarioResult
from cloudscale_local.bench.report import capacity_text, markdown_report
from tests.unit.test_bench_report import SCENARIO, report


def probe_result(rate: float, capacity: float, *, key: str = "ingest", depth: float = 0) -> ScenarioResult:
    """A 10 s probe of a server that keeps up below `capacity` requests/s and falls behind above it."""
    answered = int(rate * 60)
    overloaded = rate > capacity
    return ScenarioResult(
        SCENARIO[key],
        report(answered=answered, p99=900.0 if overloaded else 20.0, seconds=63.0 if overloaded else 60.0),
        depth,
    )


def test_a_probe_that_kept_up_passes() -> None:
    assert probe_verdict(probe_result(100, capacity=200)) == (True, "kept up")


def test_slow_answers_fail_a_probe_with_the_reason() -> None:
    passed, reason = probe_verdict(probe_result(300, capacity=200))
    assert not passed
    assert reason.startswith("ingest p99 900.0 ms")


def test_errors_fail_a_probe() -> None:
    result = ScenarioResult(SCENARIO["ingest"], report(answered=100, statuses={"202": 90, "503": 10}), 0)
    assert probe_verdict(result) == (False, "answers other than 202/429: {'503': 10}")


def test_a_growing_queue_fails_a_pipeline_probe_but_not_an_ingest_one() -> None:
    # 1,000 requests/s offered, 5,000 events still queued at the end: 5 s behind
    assert probe_verdict(probe_result(1000 / 60, capacity=10_000, key="ingest", depth=5000))[0]
    passed, reason = probe_verdict(
        ScenarioResult(SCENARIO["full"], report(answered=60_000, p99=20.0), 5000)  # target_rps 1,000
    )
    assert not passed
    assert "process stage fell behind" in reason


@pytest.mark.parametrize("true_capacity", [130.0, 700.0, 2900.0])
def test_the_search_brackets_the_true_capacity(true_capacity: float) -> None:
    rates: list[float] = []

    def measure(rate: float) -> ScenarioResult:
        rates.append(rate)
        return probe_result(rate, true_capacity)

    found = find_capacity(measure, low=3500 / 16, high=3500, max_probes=8)

    assert rates[0] == 3500
    assert found.rate is not None
    assert found.rate <= true_capacity
    failed_above = [p.rate for p in found.probes if not p.passed and p.rate > found.rate]
    assert min(failed_above) / found.rate <= 1.1 or len(found.probes) == 8
    assert found.at_least is False


def test_a_server_faster_than_the_high_bound_is_reported_as_at_least_that() -> None:
    found = find_capacity(lambda rate: probe_result(rate, 1e9), low=10, high=6000)
    assert (found.rate, found.at_least, len(found.probes)) == (6000, True, 1)


def test_the_report_shows_capacity_in_events_and_lists_the_probes() -> None:
    def measure(rate: float) -> ScenarioResult:
        return probe_result(rate, 700)

    capacity = find_capacity(measure, low=3500 / 16, high=3500)
    result = ScenarioResult(SCENARIO["batch"], report(answered=600, batch=100), 0, capacity)
    assert capacity.rate is not None
    assert capacity_text(result) == f"{capacity.rate * 100:,.0f}"
    text = markdown_report([result], machine=_MACHINE, command="make bench", duration=60)
    assert "Probes:" in text
    assert "350,000 events/s ingest p99 900.0 ms" in text


_MACHINE = {"date": "2026-11-24", "cpu": "test", "cores": "2", "system": "Linux", "python": "3.11"}
