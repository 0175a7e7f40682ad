"""The benchmark's scenarios and the settings they run the host with, as data."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BENCH_CLIENT_IPS", "BENCH_SETTINGS", "INGEST_ONLY", "OPEN_MODE", "SCENARIOS", "Scenario"]

BENCH_SETTINGS: dict[str, str] = {
    # The generator speaks for many clients through X-Forwarded-For from loopback.
    "CLOUDSCALE_TRUSTED_PROXIES": "127.0.0.1/32",
    # Limits far above the offered load: the benchmark measures the pipeline, not the limiter's refusals
    # (the limiter still runs, with its state writes, on every request).
    "CLOUDSCALE_RATE_LIMIT_IP_CAPACITY": "1000000",
    "CLOUDSCALE_RATE_LIMIT_IP_REFILL_PER_SECOND": "1000000",
    "CLOUDSCALE_RATE_LIMIT_GLOBAL_PER_MINUTE": "100000000",
    # Producers send a write key, as on Azure (the bench tenant's quota far above the load too).
    "CLOUDSCALE_WRITE_KEYS": "required",
    "CLOUDSCALE_TENANT_EVENTS_PER_MINUTE": "1000000000",
}

OPEN_MODE: dict[str, str] = {"CLOUDSCALE_WRITE_KEYS": "optional"}
"""The embedded backend's open mode: requests without a key, for the cost of authentication by difference."""

BENCH_CLIENT_IPS = 25_000
"""Enough client addresses that each stays near the 10-a-minute velocity rule at 3,500 requests/s,
so the fraud rules see realistic traffic rather than flagging (and alerting on) every event."""

INGEST_ONLY: dict[str, str] = {
    "AzureWebJobs.process_event.Disabled": "true",
    "AzureWebJobs.events_to_analytics.Disabled": "true",
}


@dataclass(frozen=True)
class Scenario:
    """One measured run on a fresh host (or ceiling) and data folder.

    `kind` says what serves and what loads it: "ceiling" (the do-nothing ASGI app, wrk),
    "ingest" and "pipeline" (the host, wrk; a pipeline run then waits for analytics to hold
    every accepted event), "overload" (the host with host.json's HTTP limits, open-loop
    `cloudscale loadtest` at a multiple of the single-event pipeline's capacity).
    `write_key`: the load sends a server key of the bench tenant (created in the data folder).
    """

    key: str
    title: str
    kind: str
    batch_size: int = 1
    settings: dict[str, str] = field(default_factory=dict)
    write_key: bool = True


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("bare", "(a) bare ASGI app (202, nothing done)", "ceiling"),
    Scenario("ingest", "(b) ingest only", "ingest", settings=INGEST_ONLY),
    Scenario(
        "ingest_open",
        "(b') ingest only, no write key (open mode)",
        "ingest",
        settings={**INGEST_ONLY, **OPEN_MODE},
        write_key=False,
    ),
    Scenario("full", "(c) full pipeline, single events", "pipeline"),
    Scenario("batch", "(d) full pipeline, batches of 100", "pipeline", batch_size=100),
    Scenario("overload", "(e) overload, one instance at 3x its capacity, host.json HTTP limits", "overload"),
)
