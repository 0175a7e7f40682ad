"""The Azure projection's arithmetic: instances for a rate, and dollars per million events."""

from __future__ import annotations

import pytest

from cloudscale_local.bench.projection import (
    OTHER_LINES_PER_MILLION,
    functions_cost_per_million,
    instances_needed,
    project,
)


@pytest.mark.parametrize(
    ("events_per_minute", "cpu_ms", "expected"),
    [
        # 1M/min is 16,667 events/s; at 1.2 ms each that is 20 cores of work: 20 one-core instances.
        (1_000_000, 1.2, 20),
        # 100k/min at 1.2 ms: 2 cores.
        (100_000, 1.2, 2),
        # 10k/min at 1.2 ms: a fifth of a core, still one instance.
        (10_000, 1.2, 1),
        # Just over a whole number of cores rounds up.
        (1_000_000, 1.21, 21),
        # No CPU at all still needs one instance to answer.
        (10_000, 0.0, 1),
    ],
)
def test_instances_are_the_busy_cores_rounded_up(events_per_minute: int, cpu_ms: float, expected: int) -> None:
    assert instances_needed(events_per_minute, cpu_ms) == expected


def test_two_core_instances_halve_the_count() -> None:
    assert instances_needed(1_000_000, 1.2, cores=2.0) == 10


def test_negative_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        instances_needed(-1, 1.0)


def test_functions_cost_is_gb_seconds_plus_executions() -> None:
    # 1 ms a event on a 2 GB, 1-core instance: 2 GB x 0.001 s x 1e6 = 2,000 GB-s = $0.052,
    # plus 2.05 M executions at $0.40 per million = $0.82 (docs/cost.md's prices).
    assert functions_cost_per_million(1.0, 2.05) == pytest.approx(0.052 + 0.82)


def test_a_projection_adds_the_lines_cpu_does_not_change() -> None:
    projection = project("batched", 0.5)

    assert projection.instances == {10_000: 1, 100_000: 1, 1_000_000: 9}
    assert projection.execution_time_per_million == pytest.approx(2 * 0.0005 * 1e6 * 0.000026)
    assert projection.functions_per_million == pytest.approx(projection.execution_time_per_million + 1.02 * 0.40)
    assert projection.total_per_million == pytest.approx(
        projection.functions_per_million + OTHER_LINES_PER_MILLION["batched"]
    )
