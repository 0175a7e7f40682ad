"""Metrics and tracing through the OpenTelemetry API, with the seed's metric names.

Instruments are created from the global meter provider, whatever it is: on Azure the
`azure-monitor-opentelemetry` distro installs one (see `configure_azure_monitor`), locally
the host installs one with a Prometheus reader for `/metrics`. Instruments created before a
provider is installed follow it once it is (the API's proxy meter), so creating them early
is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from shared.settings import Settings

__all__ = [
    "IngestMetrics",
    "ProcessMetrics",
    "configure_azure_monitor",
    "ingest_metrics",
    "observe_queue_depth",
    "process_metrics",
]

logger = logging.getLogger(__name__)

METER_NAME = "cloudscale"
# Latency buckets in seconds around the 200 ms ingest SLO.
LATENCY_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngestMetrics:
    """The ingest API's instruments."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.events_ingested = meter.create_counter(
            "cloudscale_events_ingested_total", unit="1", description="Events received, by outcome (accepted, rejected)"
        )
        self.ingestion_duration = meter.create_histogram(
            "cloudscale_ingestion_duration_seconds",
            unit="s",
            description="Time to answer POST /api/events, by status code",
            explicit_bucket_boundaries_advisory=list(LATENCY_BUCKETS_SECONDS),
        )
        self.rate_limit_rejections = meter.create_counter(
            "cloudscale_rate_limit_rejections_total", unit="1", description="Requests refused with 429, by limit"
        )


@cache
def ingest_metrics() -> IngestMetrics:
    """The process-wide ingest instruments (created once)."""
    return IngestMetrics(metrics.get_meter(METER_NAME))


class ProcessMetrics:
    """The process stage's instruments."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.processing_duration = meter.create_histogram(
            "cloudscale_processing_duration_seconds",
            unit="s",
            description="Time to process one queue message (decode, score, store), by outcome",
            explicit_bucket_boundaries_advisory=list(LATENCY_BUCKETS_SECONDS),
        )
        self.events_processed = meter.create_counter(
            "cloudscale_events_processed_total",
            unit="1",
            description="Queue messages processed, by outcome (stored, duplicate)",
        )
        self.processing_retries = meter.create_counter(
            "cloudscale_processing_retries_total", unit="1", description="Event-store calls retried after a failure"
        )
        self.events_dead_lettered = meter.create_counter(
            "cloudscale_events_dead_lettered_total", unit="1", description="Messages dead-lettered, by reason"
        )
        self.fraud_detected = meter.create_counter(
            "cloudscale_fraud_detected_total", unit="1", description="Fraud rules fired on stored events, by rule"
        )


@cache
def process_metrics() -> ProcessMetrics:
    """The process-wide process-stage instruments (created once)."""
    return ProcessMetrics(metrics.get_meter(METER_NAME))


def observe_queue_depth(read_depth: Callable[[], int]) -> None:
    """Report `cloudscale_queue_depth` by calling `read_depth` at each collection."""

    def observe(_options: CallbackOptions) -> list[Observation]:
        try:
            return [Observation(read_depth())]
        except Exception:  # a failed read must not break the whole scrape
            logger.warning("could not read the queue depth", exc_info=True)
            return []

    metrics.get_meter(METER_NAME).create_observable_gauge(
        "cloudscale_queue_depth", callbacks=[observe], unit="1", description="Messages waiting or in flight"
    )


def configure_azure_monitor(settings: Settings) -> bool:
    """Send traces, metrics and logs to Application Insights when a connection string is set."""
    if not settings.applicationinsights_connection_string:
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor as configure

    configure(connection_string=settings.applicationinsights_connection_string)
    return True
