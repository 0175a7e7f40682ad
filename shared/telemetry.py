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
    "AnalyticsMetrics",
    "IngestMetrics",
    "ProcessMetrics",
    "analytics_metrics",
    "configure_azure_monitor",
    "ingest_metrics",
    "observe_queue_depth",
    "process_metrics",
]

logger = logging.getLogger(__name__)

METER_NAME = "cloudscale"
# Latency buckets in seconds around the 200 ms ingest SLO.
LATENCY_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
# Freshness buckets: seconds locally, up to the minutes a queued Data Explorer ingestion takes.
LAG_BUCKETS_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


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


class AnalyticsMetrics:
    """The change-feed stage's instruments."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.analytics_lag = meter.create_histogram(
            "cloudscale_analytics_lag_seconds",
            unit="s",
            description="Time from an event being stored (since=stored) or received (since=received) to analytics",
            explicit_bucket_boundaries_advisory=list(LAG_BUCKETS_SECONDS),
        )
        self.rows_written = meter.create_counter(
            "cloudscale_analytics_rows_total", unit="1", description="Rows handed to the analytics store"
        )
        self.documents_skipped = meter.create_counter(
            "cloudscale_analytics_skipped_total",
            unit="1",
            description="Change-feed documents that are not stored events (left out of analytics)",
        )


@cache
def analytics_metrics() -> AnalyticsMetrics:
    """The process-wide change-feed instruments (created once)."""
    return AnalyticsMetrics(metrics.get_meter(METER_NAME))


def observe_queue_depth(read_depth: Callable[[], int], read_dead_letter_depth: Callable[[], int]) -> None:
    """Report `cloudscale_queue_depth` and `cloudscale_dead_letter_depth` at each collection."""
    meter = metrics.get_meter(METER_NAME)
    meter.create_observable_gauge(
        "cloudscale_queue_depth",
        callbacks=[_observer(read_depth)],
        unit="1",
        description="Messages waiting or in flight",
    )
    meter.create_observable_gauge(
        "cloudscale_dead_letter_depth",
        callbacks=[_observer(read_dead_letter_depth)],
        unit="1",
        description="Messages in the dead-letter queue, waiting to be inspected or replayed",
    )


def _observer(read: Callable[[], int]) -> Callable[[CallbackOptions], list[Observation]]:
    def observe(_options: CallbackOptions) -> list[Observation]:
        try:
            return [Observation(read())]
        except Exception:  # a failed read must not break the whole scrape
            logger.warning("could not read a queue depth", exc_info=True)
            return []

    return observe


def configure_azure_monitor(settings: Settings) -> bool:
    """Send traces, metrics and logs to Application Insights when a connection string is set."""
    if not settings.applicationinsights_connection_string:
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor as configure

    configure(connection_string=settings.applicationinsights_connection_string)
    return True
