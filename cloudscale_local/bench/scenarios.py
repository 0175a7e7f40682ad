"""The benchmark's scenarios and targets, as data."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BENCH_SETTINGS", "INGEST_ONLY", "SCENARIOS", "Scenario"]

BENCH_SETTINGS: dict[str, str] = {
    # The generator speaks for many clients through X-Forwarded-For from loopback.
    "CLOUDSCALE_TRUSTED_PROXIES": "127.0.0.1/32",
    # Limits far above the offered load: the benchmark measures the pipeline, not the limiter's refusals
    # (the limiter still runs, with its state writes, on every request).
    "CLOUDSCALE_RATE_LIMIT_IP_CAPACITY": "1000000",
    "CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND": "1000000",
    "CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE": "100000000",
}

BENCH_CLIENT_IPS = 25_000
"""Enough client addresses that each stays near the 10-a-minute velocity rule at 3,500 requests/s,
so the fraud rules see realistic traffic rather than flagging (and alerting on) every event."""

INGEST_ONLY: dict[str, str] = {
    "AzureWebJobs.process_event.Disabled": "true",
    "AzureWebJobs.events_to_analytics.Disabled": "true",
}


@dataclass(frozen=True)
class Scenario:
    """One measured run: what the host serves and what the generator offers."""

    key: str
    title: str
    path: str
    target_rps: float
    batch_size: int = 1
    ips: int = BENCH_CLIENT_IPS
    settings: dict[str, str] = field(default_factory=dict)
    bare_endpoint: bool = False
    end_to_end: bool = False
    target_events_per_second: float | None = None
    """The issue's target for this scenario, if it has one."""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("bare", "(a) bare endpoint (202, nothing done)", "/_bench/bare", 6000, bare_endpoint=True),
    Scenario("ingest", "(b) ingest only", "/api/events", 3500, settings=INGEST_ONLY),
    Scenario(
        "full", "(c) full pipeline, single events", "/api/events", 3500, end_to_end=True, target_events_per_second=3500
    ),
    Scenario(
        "batch",
        "(d) full pipeline, batches of 100",
        "/api/events",
        250,
        batch_size=100,
        end_to_end=True,
        target_events_per_second=25000,
    ),
)
