"""The dashboard's numbers from two readings of the host's Prometheus text."""

from __future__ import annotations

import pytest

from cloudscale_local.host.console.stats import compute_stats, parse_reading

SCOPE = 'otel_scope_name="cloudscale",otel_scope_schema_url="",otel_scope_version=""'


def exposition(accepted: float, stored: float, buckets: dict[str, float], limited: float, fraud: float) -> bytes:
    lines = [
        "# TYPE cloudscale_events_ingested_total counter",
        f'cloudscale_events_ingested_total{{{SCOPE},outcome="accepted"}} {accepted}',
        "# TYPE cloudscale_events_rejected_total counter",
        f'cloudscale_events_rejected_total{{{SCOPE},reason="missing"}} {accepted / 10}',
        f'cloudscale_events_rejected_total{{{SCOPE},reason="rate_limited"}} {accepted / 10}',
        "# TYPE cloudscale_events_processed_total counter",
        f'cloudscale_events_processed_total{{{SCOPE},outcome="stored"}} {stored}',
        "# TYPE cloudscale_ingestion_duration_seconds histogram",
        *(
            f'cloudscale_ingestion_duration_seconds_bucket{{{SCOPE},le="{le}",status_code="202"}} {count}'
            for le, count in buckets.items()
        ),
        f'cloudscale_ingestion_duration_seconds_count{{{SCOPE},status_code="202"}} {buckets["+Inf"]}',
        f'cloudscale_ingestion_duration_seconds_sum{{{SCOPE},status_code="202"}} 1.0',
        "# TYPE cloudscale_queue_depth gauge",
        f"cloudscale_queue_depth{{{SCOPE}}} 7.0",
        "# TYPE cloudscale_rate_limit_rejections_total counter",
        f'cloudscale_rate_limit_rejections_total{{{SCOPE},limit="ip"}} {limited}',
        "# TYPE cloudscale_fraud_detected_total counter",
        f'cloudscale_fraud_detected_total{{{SCOPE},rule="ip-velocity"}} {fraud}',
    ]
    return ("\n".join(lines) + "\n").encode()


def test_counters_become_rates_per_second_and_gauges_stand_as_read() -> None:
    before = parse_reading(exposition(10, 4, {"0.01": 0, "0.1": 0, "+Inf": 0}, 0, 0), at=100.0)
    after = parse_reading(exposition(30, 8, {"0.01": 0, "0.1": 0, "+Inf": 0}, 6, 2), at=102.0)
    stats = compute_stats(before, after)
    assert (stats["ingested"], stats["stored"], stats["queueDepth"]) == (10.0, 2.0, 7.0)
    assert stats["rejected"] == pytest.approx(2.0)  # every reason summed
    assert stats["rateLimited"] == {"ip": 3.0}
    assert stats["fraud"] == {"ip-velocity": 1.0}


def test_quantiles_come_from_the_requests_in_between_only() -> None:
    # 100 slow requests before; in between, 100 requests all under 10 ms.
    before = parse_reading(exposition(0, 0, {"0.01": 0, "0.1": 100, "+Inf": 100}, 0, 0), at=0.0)
    after = parse_reading(exposition(0, 0, {"0.01": 100, "0.1": 200, "+Inf": 200}, 0, 0), at=1.0)
    stats = compute_stats(before, after)
    assert stats["ingestP50Ms"] == pytest.approx(5.0)
    assert stats["ingestP99Ms"] == pytest.approx(9.9)


def test_nothing_in_between_gives_no_quantile_and_a_first_reading_no_rate() -> None:
    reading = parse_reading(exposition(5, 5, {"0.01": 1, "0.1": 1, "+Inf": 1}, 0, 0), at=0.0)
    first = compute_stats(None, reading)
    assert (first["ingested"], first["ingestP50Ms"]) == (0.0, None)
    assert (
        compute_stats(reading, parse_reading(exposition(5, 5, {"0.01": 1, "0.1": 1, "+Inf": 1}, 0, 0), 1.0))[
            "ingestP99Ms"
        ]
        is None
    )
