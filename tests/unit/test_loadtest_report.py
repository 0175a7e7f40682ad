"""The report: its JSON form, the verdict on the generator, and end-to-end latencies from the store."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from cloudscale_local.loadtest.e2e import measure_end_to_end
from cloudscale_local.loadtest.latency import LatencySummary, summarize
from cloudscale_local.loadtest.report import BehindSchedule, EndToEnd, LoadReport, camel_case_keys, judge_kept_up

ACCEPTED_AT = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def make_report(**overrides: object) -> LoadReport:
    fields: dict[str, object] = {
        "url": "http://127.0.0.1:7071/api/events",
        "started_at": "2026-01-01T00:00:00.000Z",
        "duration_seconds": 10.0,
        "target_rps": 500.0,
        "batch_size": 1,
        "workers": 1,
        "ips": 256,
        "tenants": 10,
        "requests_scheduled": 5000,
        "requests_sent": 5000,
        "achieved_rps": 500.0,
        "events_sent": 5000,
        "events_accepted": 4990,
        "accepted_events_per_second": 499.0,
        "status_counts": {"202": 4990, "429": 8, "error": 2},
        "error_kinds": {"ServerDisconnectedError": 2},
        "ingest_latency_ms": summarize([1.0, 2.0, 3.0]),
        "behind_schedule": BehindSchedule(
            late_sends=0, worst_lag_ms=1.2, threshold_ms=5.0, in_flight_cap_hits=0, skipped=0
        ),
        "kept_up": True,
        "generator_cpu_seconds": 2.4,
        "generator_cpu_percent": 23.9,
        "end_to_end": EndToEnd(measured=False, reason="no data folder given"),
    }
    fields.update(overrides)
    return LoadReport(**fields)  # type: ignore[arg-type]


def test_the_json_report_has_camel_case_keys_and_status_codes_as_they_are() -> None:
    data = make_report().to_dict()
    assert json.loads(orjson.dumps(data)) == data  # JSON-ready as it is
    assert set(data) == {
        "url",
        "startedAt",
        "durationSeconds",
        "targetRps",
        "batchSize",
        "workers",
        "ips",
        "tenants",
        "requestsScheduled",
        "requestsSent",
        "achievedRps",
        "eventsSent",
        "eventsAccepted",
        "acceptedEventsPerSecond",
        "statusCounts",
        "errorKinds",
        "ingestLatencyMs",
        "behindSchedule",
        "keptUp",
        "generatorCpuSeconds",
        "generatorCpuPercent",
        "endToEnd",
        "answeredSeconds",
        "sustainedEventsPerSecond",
        "latencyByStatusMs",
    }
    assert data["statusCounts"] == {"202": 4990, "429": 8, "error": 2}
    assert data["errorKinds"] == {"ServerDisconnectedError": 2}
    assert data["ingestLatencyMs"] == {"count": 3, "p50": 2.0, "p90": 3.0, "p99": 3.0, "max": 3.0}
    assert data["behindSchedule"] == {
        "lateSends": 0,
        "worstLagMs": 1.2,
        "thresholdMs": 5.0,
        "inFlightCapHits": 0,
        "skipped": 0,
    }
    assert data["endToEnd"]["measured"] is False
    assert data["endToEnd"]["reason"] == "no data folder given"
    assert data["endToEnd"]["toStoredMs"] == {"count": 0, "p50": None, "p90": None, "p99": None, "max": None}


def test_camel_case_reaches_nested_lists_and_leaves_kept_values_alone() -> None:
    converted = camel_case_keys({"a_b": [{"c_d_e": 1}], "keep_me": {"x_y": 2}}, keep={"keepMe"})
    assert converted == {"aB": [{"cDE": 1}], "keepMe": {"x_y": 2}}


@pytest.mark.parametrize(
    ("achieved", "sent", "late", "expected"),
    [
        (1000.0, 60_000, 0, True),
        (950.0, 57_000, 0, True),  # exactly 95% of the rate
        (949.0, 56_940, 0, False),
        (1000.0, 60_000, 600, True),  # exactly 1% late
        (1000.0, 60_000, 601, False),
        (1000.0, 1, 1, False),
    ],
)
def test_the_generator_kept_up_only_near_the_rate_and_mostly_on_time(
    achieved: float, sent: int, late: int, expected: bool
) -> None:
    assert judge_kept_up(target_rps=1000, achieved_rps=achieved, requests_sent=sent, late_sends=late) is expected


def test_falling_behind_is_explained_in_words() -> None:
    assert make_report().fell_behind_reason() is None
    behind = make_report(
        kept_up=False,
        achieved_rps=310.5,
        requests_sent=3105,
        behind_schedule=BehindSchedule(
            late_sends=2900, worst_lag_ms=812.0, threshold_ms=5.0, in_flight_cap_hits=3, skipped=1895
        ),
    )
    reason = behind.fell_behind_reason()
    assert reason is not None
    assert "310.5 requests/s of the 500 asked" in reason
    assert "2900 of 3105 sends started more than 5 ms late (worst 812.0 ms)" in reason
    assert "held back 3 sends" in reason
    assert "1895 scheduled requests were never sent" in reason


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _store(data_dir: Path, rows: list[tuple[str, float, float]], *, table: bool = True) -> None:
    # The columns the measurement reads, in the embedded analytics store's text format.
    with contextlib.closing(sqlite3.connect(data_dir / "analytics.sqlite3")) as db:
        if table:
            db.execute("CREATE TABLE IF NOT EXISTS events (EventId TEXT PRIMARY KEY, StoredAt TEXT, AnalyticsAt TEXT)")
            db.executemany("INSERT INTO events VALUES (?, ?, ?)", [(i, _iso(s), _iso(a)) for i, s, a in rows])
        db.commit()


def test_end_to_end_latencies_come_from_the_analytics_store(tmp_path: Path) -> None:
    _store(
        tmp_path,
        [
            ("a", ACCEPTED_AT + 0.010, ACCEPTED_AT + 0.020),
            ("b", ACCEPTED_AT + 1.030, ACCEPTED_AT + 1.100),
            ("other", ACCEPTED_AT, ACCEPTED_AT),  # not ours: ignored
        ],
    )
    waits: list[tuple[int, int]] = []
    result = measure_end_to_end(
        tmp_path,
        ["a", "b"],
        [ACCEPTED_AT, ACCEPTED_AT + 1.0],
        drain_seconds=5,
        on_wait=lambda found, expected: waits.append((found, expected)),
    )
    assert result.measured
    assert (result.tracked, result.arrived, result.missing) == (2, 2, 0)
    assert result.to_stored_ms == LatencySummary(count=2, p50=10.0, p90=30.0, p99=30.0, max=30.0)
    assert result.to_analytics_ms == LatencySummary(count=2, p50=20.0, p90=100.0, p99=100.0, max=100.0)
    assert waits == [(2, 2)]


def test_events_that_never_arrive_are_counted_after_the_drain_time(tmp_path: Path) -> None:
    _store(tmp_path, [("a", ACCEPTED_AT + 0.01, ACCEPTED_AT + 0.02)])
    result = measure_end_to_end(tmp_path, ["a", "lost"], [ACCEPTED_AT, ACCEPTED_AT], drain_seconds=0.3)
    assert result.measured
    assert (result.arrived, result.missing) == (1, 1)
    assert result.to_stored_ms.count == 1
    assert result.waited_seconds >= 0.3


def test_events_that_arrive_while_waiting_are_found(tmp_path: Path) -> None:
    _store(tmp_path, [], table=False)  # the file exists, the table does not yet

    def late_writer() -> None:
        time.sleep(0.3)
        _store(tmp_path, [("a", ACCEPTED_AT + 0.5, ACCEPTED_AT + 0.6)])

    writer = threading.Thread(target=late_writer)
    writer.start()
    try:
        result = measure_end_to_end(tmp_path, ["a"], [ACCEPTED_AT], drain_seconds=10)
    finally:
        writer.join()
    assert (result.arrived, result.missing) == (1, 0)
    assert result.to_stored_ms.max == 500.0


def test_the_store_is_only_read(tmp_path: Path) -> None:
    _store(tmp_path, [("a", ACCEPTED_AT, ACCEPTED_AT)])
    before = (tmp_path / "analytics.sqlite3").read_bytes()
    measure_end_to_end(tmp_path, ["a", "b"], [ACCEPTED_AT, ACCEPTED_AT], drain_seconds=0.2)
    assert (tmp_path / "analytics.sqlite3").read_bytes() == before


def test_without_a_data_folder_or_store_or_acceptance_nothing_is_measured(tmp_path: Path) -> None:
    assert measure_end_to_end(None, ["a"], [ACCEPTED_AT], drain_seconds=1) == EndToEnd(
        measured=False, reason="no data folder given"
    )
    nothing = measure_end_to_end(tmp_path, [], [], drain_seconds=1)
    assert (nothing.measured, nothing.reason) == (False, "no event was accepted")
    absent = measure_end_to_end(tmp_path, ["a"], [ACCEPTED_AT], drain_seconds=0.2)
    assert absent.measured is False
    assert absent.reason == f"no analytics store at {tmp_path / 'analytics.sqlite3'}"
