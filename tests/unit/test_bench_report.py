"""The benchmark's tables and verdicts, from synthetic results (no load is run here)."""

from __future__ import annotations

from cloudscale_local.bench.harness import BenchOptions, Drain, ScenarioResult
from cloudscale_local.bench.report import judge, markdown_report, stage_cpu, table_rows
from cloudscale_local.bench.scenarios import SCENARIOS
from cloudscale_local.bench.wrk import WrkResult
from cloudscale_local.loadtest.latency import LatencySummary
from cloudscale_local.loadtest.report import BehindSchedule, EndToEnd, LoadReport

SCENARIO = {scenario.key: scenario for scenario in SCENARIOS}
MACHINE = {"date": "d", "cpu": "c", "cores": "2", "python": "3.11", "system": "s", "wrk": "wrk 4.1.0"}


def wrk(rps: float, *, p99: float = 10.0, batch: int = 1, statuses: dict[str, int] | None = None) -> WrkResult:
    requests = int(rps * 60)
    return WrkResult(
        requests=requests,
        duration_seconds=60.0,
        requests_per_second=rps,
        latency_ms={"50": p99 / 2, "75": p99 / 1.5, "90": p99 / 1.2, "99": p99},
        statuses=statuses or {"202": requests},
        accepted_events=requests * batch,
    )


def drain(expected: int, *, arrived: int | None = None, p99: float = 500.0, rate: float | None = None) -> Drain:
    got = expected if arrived is None else arrived
    return Drain(
        expected=expected,
        arrived=got,
        stored=got,
        seconds=1.0,
        to_analytics_ms=LatencySummary(got, p99 / 2, p99 / 1.2, p99, p99),
        end_to_end_events_per_second=rate,
    )


def overload(*, p99_202: float, p99_429: float, memory: list[float], stored: int) -> ScenarioResult:
    load = LoadReport(
        url="http://127.0.0.1:1/api/events",
        started_at="2026-11-24T00:00:00.000Z",
        duration_seconds=60.0,
        target_rps=9000.0,
        batch_size=1,
        workers=1,
        ips=10,
        tenants=3,
        requests_scheduled=540_000,
        requests_sent=540_000,
        achieved_rps=9000.0,
        events_sent=540_000,
        events_accepted=180_000,
        accepted_events_per_second=3000.0,
        status_counts={"202": 180_000, "429": 360_000},
        error_kinds={},
        ingest_latency_ms=LatencySummary(540_000, 5.0, 8.0, 100.0, 300.0),
        behind_schedule=BehindSchedule(0, 0.0, 5.0, 0, 0),
        kept_up=True,
        generator_cpu_seconds=1.0,
        generator_cpu_percent=10.0,
        end_to_end=EndToEnd(measured=False),
        latency_by_status_ms={
            "202": LatencySummary(180_000, 20.0, 40.0, p99_202, p99_202),
            "429": LatencySummary(360_000, 2.0, 4.0, p99_429, p99_429),
        },
    )
    return ScenarioResult(
        SCENARIO["overload"], 2, load=load, cpu_seconds=200.0, drain=drain(180_000, arrived=stored), memory_mb=memory
    )


def meeting_every_target() -> list[ScenarioResult]:
    return [
        ScenarioResult(SCENARIO["bare"], 2, wrk=wrk(16_000), cpu_seconds=100.0),
        ScenarioResult(SCENARIO["ingest"], 2, wrk=wrk(8_000), cpu_seconds=168.0, queue_depth_at_end=480_000),
        ScenarioResult(
            SCENARIO["full"], 2, wrk=wrk(4_000), cpu_seconds=240.0, drain=drain(240_000), queue_depth_at_end=0
        ),
        ScenarioResult(
            SCENARIO["batch"],
            2,
            wrk=wrk(300, batch=100, p99=120.0),
            cpu_seconds=900.0,
            drain=drain(1_800_000, rate=26_000),
            queue_depth_at_end=0,
        ),
        overload(p99_202=150.0, p99_429=20.0, memory=[200, 220, 230, 228, 231, 229], stored=180_000),
    ]


def test_a_run_that_meets_every_target_is_judged_met() -> None:
    results = meeting_every_target()

    verdicts = judge(results)

    assert [target for target, met, _, _ in verdicts if not met] == []
    assert len(verdicts) == 12
    header, rows = table_rows(results)
    assert len(rows) == 5
    assert all(len(row) == len(header) for row in rows)
    assert rows[1][header.index("vs bare")] == "50%"
    assert rows[2][header.index("CPU ms/event")] == "1.000"


def test_shortfalls_say_by_how_much() -> None:
    slow = ScenarioResult(
        SCENARIO["full"],
        1,
        wrk=wrk(700, p99=200.0, statuses={"202": 41_000, "503": 7}),
        drain=drain(42_000, arrived=40_000, p99=1500.0),
        queue_depth_at_end=5000,
    )

    verdicts = {target: (met, measured, margin) for target, met, measured, margin in judge([slow])}

    assert verdicts["full pipeline, single events: >= 3,500 events/s accepted"] == (
        False,
        "700/s",
        "short: x0.20 of the target",
    )
    assert verdicts["... every accepted event in analytics"] == (False, "40,000 of 42,000", "2,000 missing")
    assert verdicts["... ingest p99 <= 50 ms"] == (False, "200.0 ms", "short: x4.00 of the target")
    assert verdicts["... 202-to-analytics p99 <= 1 s"][0] is False
    assert verdicts["... no errors"] == (False, "{'503': 7}", "")
    assert verdicts["... queue depth bounded at the end (< 1,000)"][0] is False


def test_overload_judges_latencies_memory_and_losses() -> None:
    result = overload(p99_202=900.0, p99_429=400.0, memory=[200, 210, 300, 400], stored=179_000)

    verdicts = {target: met for target, met, _, _ in judge([result])}

    assert verdicts == {
        "overload: p99 of the 202s <= 200 ms": False,
        "... the excess answered 429/503 within 50 ms (p99)": False,
        "... resident memory flat (second half's peak within 20% of the first half's)": False,
        "... nothing answered 202 lost (event store count)": False,
    }


def test_stage_cpu_splits_ingest_from_the_rest() -> None:
    stages = dict(stage_cpu(meeting_every_target()))

    assert stages["ingest (b)"] == 0.35
    assert round(stages["process + change feed ((c) - (b))"], 3) == 0.65


def test_the_markdown_report_has_every_section() -> None:
    text = markdown_report(meeting_every_target(), machine=MACHINE, command="make bench", options=BenchOptions())

    for heading in (
        "## Machine and commands",
        "## Scenarios",
        "### Overload",
        "## Targets",
        "## CPU per event, by stage",
        "## Azure projection (Flex Consumption, 2,048 MB)",
    ):
        assert heading in text
    assert "| (c) full pipeline, single events | 2 |" in text
    assert "| single | 1.000 | 1 | 2 | 17 |" in text
