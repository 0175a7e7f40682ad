"""The open-loop schedule: how many requests, when each is due, and how workers share them."""

from __future__ import annotations

import itertools

import pytest

from cloudscale_local.loadtest.schedule import Schedule


@pytest.mark.parametrize(
    ("rate", "duration", "total"),
    [
        (100, 3, 300),
        (1000, 60, 60_000),
        (3, 2.5, 8),  # i / 3 < 2.5 for i = 0..7
        (0.5, 1, 1),  # one request at t=0; the next would be due at 2 s
        (0.1, 3, 1),
        (7, 1, 7),
        (33.3, 3, 100),  # 99.9 -> 100
    ],
)
def test_the_run_schedules_every_request_due_within_the_duration(rate: float, duration: float, total: int) -> None:
    schedule = Schedule(rate=rate, duration=duration)
    assert schedule.total == total
    assert schedule.due(total - 1) < duration
    assert schedule.due(total) >= duration or total == 1


def test_request_i_is_due_at_i_over_rate_without_drift() -> None:
    schedule = Schedule(rate=1000, duration=3600)
    assert schedule.due(0) == 0
    assert schedule.due(1) == 0.001
    # Computed from the index, not accumulated: no drift after millions of requests.
    assert schedule.due(3_000_000) == 3000.0
    summed = 0.0
    for _ in range(1_000_000):
        summed += 0.001
    assert summed != 1000.0  # what adding intervals would have done
    assert schedule.due(1_000_000) == 1000.0


@pytest.mark.parametrize(("total_rate", "workers"), [(100, 1), (100, 3), (1000, 4), (7, 3), (2, 5)])
def test_workers_interleave_into_the_one_stream_without_gaps_or_overlap(total_rate: float, workers: int) -> None:
    schedule = Schedule(rate=total_rate, duration=3, workers=workers)
    sent: list[int] = []
    for worker in range(workers):
        sent += [schedule.global_index(worker, j) for j in range(schedule.count_for(worker))]
    assert sorted(sent) == list(range(schedule.total))
    assert sum(schedule.count_for(worker) for worker in range(workers)) == schedule.total


def test_each_worker_sends_at_its_share_of_the_rate_offset_from_the_others() -> None:
    schedule = Schedule(rate=1000, duration=1, workers=4)
    assert schedule.interval == pytest.approx(0.004)
    for worker in range(4):
        dues = [schedule.due(schedule.global_index(worker, j)) for j in range(schedule.count_for(worker))]
        assert dues[0] == pytest.approx(worker / 1000)
        gaps = {round(later - earlier, 9) for earlier, later in itertools.pairwise(dues)}
        assert gaps == {0.004}


def test_more_workers_than_requests_leaves_some_idle() -> None:
    schedule = Schedule(rate=2, duration=1, workers=5)
    assert [schedule.count_for(worker) for worker in range(5)] == [1, 1, 0, 0, 0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0, "duration": 1},
        {"rate": -5, "duration": 1},
        {"rate": float("inf"), "duration": 1},
        {"rate": 10, "duration": 0},
        {"rate": 10, "duration": float("nan")},
        {"rate": 10, "duration": 1, "workers": 0},
    ],
)
def test_an_impossible_schedule_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must be|at least one"):
        Schedule(**kwargs)  # type: ignore[arg-type]


def test_a_worker_outside_the_pool_is_refused() -> None:
    with pytest.raises(ValueError, match=r"not in 0\.\.1"):
        Schedule(rate=10, duration=1, workers=2).count_for(2)
