"""The benchmark's table and verdicts, from synthetic load reports (no load is run here)."""

from __future__ import annotations

from cloudscale_local.bench.harness import ScenarioResult
from cloudscale_local.bench.report import judge, markdown_report, table_rows
from cloudscale_local.bench.scenarios import SCENARIOS
from cloudscale_local.loadtest.latency import LatencySummary
from cloudscale_local.loadtest.report import BehindSchedule, EndToEnd, LoadReport

SCENARIO = {scenario.key: scenario for scenario in SCENARIOS}


def report(
    *,
    answered: int,
    batch: int = 1,
    p99: float = 10.0,
    seconds: float = 60.0,
    e2e_p99: float | None = None,
    arrived: int = 0,
    tracked: int = 0,
    statuses: dict[str, int] | None = None,
) -> LoadReport:
    e2e = (
        EndToEnd(
            measured=True,
            tracked=tracked,
            arrived=arrived,
            to_analytics_ms=LatencySummary(arrived, 100.0, 200.0, e2e_p99, e2e_p99),
        )
        if e2e_p99 is not None
        else EndToEnd(measured=False, reason="no data folder given")
    )
    return LoadReport(
        url="http://127.0.0.1:1/api/events",
        started_at="2026-11-24T00:00:00.000Z",
        duration_seconds=60.0,
        target_rps=answered / 60.0,
        batch_size=batch,
        workers=1,
        ips=10,
        tenants=3,
        requests_scheduled=answered,
        requests_sent=answered,
        achieved_rps=answered / 60.0,
        events_sent=answered * batch,
        events_accepted=answered * batch,
        accepted_events_per_second=answered * batch / 60.0,
        status_counts=statuses or {"202": answered},
        error_kinds={},
        ingest_latency_ms=LatencySummary(answered, 5.0, 8.0, p99, p99 * 2),
        behind_schedule=BehindSchedule(0, 0.0, 5.0, 0, 0),
        kept_up=True,
        generator_cpu_seconds=1.0,
        generator_cpu_percent=10.0,
        end_to_end=e2e,
        answered_seconds=seconds,
        sustained_events_per_second=answered * batch / max(60.0, seconds),
    )


def test_a_run_that_meets_every_target_is_judged_met() -> None:
    results = [
        ScenarioResult(SCENARIO["bare"], report(answered=600_000), 0),
        ScenarioResult(SCENARIO["ingest"], report(answered=300_000), 0),
        ScenarioResult(SCENARIO["full"], report(answered=240_000, e2e_p99=800.0, arrived=240_000, tracked=240_000), 3),
        ScenarioResult(
            SCENARIO["batch"], report(answered=18_000, batch=100, e2e_p99=900, arrived=1_800_000, tracked=1_800_000), 0
        ),
    ]
    verdicts = judge(results)
    assert [met for _, met, _ in verdicts] == [True] * len(verdicts)
    header, rows = table_rows(results)
    assert len(rows) == 4
    assert all(len(row) == len(header) for row in rows)
    assert rows[1][header.index("vs bare")] == "50%"


def test_shortfalls_are_named_with_what_was_measured() -> None:
    slow = report(
        answered=60_000,
        p99=900.0,
        seconds=120.0,
        e2e_p99=40_000.0,
        arrived=50_000,
        tracked=60_000,
        statuses={"202": 60_000, "503": 7},
    )
    verdicts = {
        target: (met, measured) for target, met, measured in judge([ScenarioResult(SCENARIO["full"], slow, 5000)])
    }
    assert verdicts["full pipeline, single events: >= 3,500 events/s sustained"] == (False, "500/s")
    assert verdicts["... and every accepted event in analytics"] == (False, "50,000 of 60,000")
    assert verdicts["... ingest p99 <= 50 ms"][0] is False
    assert verdicts["... no errors besides 429"] == (False, "{'503': 7}")
    assert verdicts["... queue depth bounded at the end"][0] is False
    text = markdown_report(
        [ScenarioResult(SCENARIO["full"], slow, 5000)],
        machine={"date": "d", "cpu": "c", "cores": "2", "python": "3.11", "system": "s"},
        command="make bench",
        duration=60,
    )
    assert "**short**" in text
    assert "| (c) full pipeline, single events |" in text
