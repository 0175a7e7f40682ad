"""Metrics and tracing through the OpenTelemetry API, with the seed's metric names.

Instruments are created from the global meter provider, whatever it is: on Azure the
`azure-monitor-opentelemetry` distro installs one (see `configure_azure_monitor`), locally
the host installs one with a Prometheus reader for `/metrics`. Instruments created before a
provider is installed follow it once it is (the API's proxy meter), so creating them early
is safe.

Traces: the Functions host hands each invocation the W3C trace context of its own activity
(`context.trace_context.trace_parent` / `trace_state`): the HTTP request it served, or the
Service Bus processing it did. `invocation_span` runs a function's work under a span whose
parent is that activity, so the host's request record and the app's spans are one
operation; `message_parent` continues a queue message's trace for the work on each event.
See docs/architecture.md ("Trace context") for the sources.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Protocol

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.settings import Settings

__all__ = [
    "DIAGNOSTIC_ID",
    "TRACEPARENT",
    "TRACESTATE",
    "AnalyticsMetrics",
    "HostTraceContext",
    "IngestMetrics",
    "Invocation",
    "ProcessMetrics",
    "analytics_metrics",
    "configure_azure_monitor",
    "ingest_metrics",
    "invocation_parent",
    "invocation_span",
    "message_parent",
    "message_trace_carrier",
    "observe_queue_depth",
    "process_metrics",
    "span_link",
]

logger = logging.getLogger(__name__)

METER_NAME = "cloudscale"
# Latency buckets in seconds around the 200 ms ingest SLO.
LATENCY_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0)
# Freshness buckets: seconds locally, up to the minutes a queued Data Explorer ingestion takes.
LAG_BUCKETS_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
DIAGNOSTIC_ID = "Diagnostic-Id"
"""The Service Bus SDKs' older application property for a message's traceparent (still set beside it)."""

# W3C Trace Context only, whatever the global propagator: it is the format the host hands over
# and the one Service Bus messages carry.
_W3C = TraceContextTextMapPropagator()
tracer = trace.get_tracer("cloudscale")


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
        self.events_rejected = meter.create_counter(
            "cloudscale_events_rejected_total",
            unit="1",
            description=(
                "Events rejected, by reason: a field error's code, or the code of the refusal of their "
                "whole request (one per request whose body did not parse)"
            ),
        )


@cache
def ingest_metrics() -> IngestMetrics:
    """The process-wide ingest instruments (created once)."""
    return IngestMetrics(metrics.get_meter(METER_NAME))


def _events_suppressed(meter: metrics.Meter) -> metrics.Counter:
    # One instrument for every stage that drops an erased subject's event, told apart by `stage`
    # (process, changefeed, reconcile); the meter hands back the same counter to each.
    return meter.create_counter(
        "cloudscale_events_suppressed_total",
        unit="1",
        description="Events of an erased subject dropped (not stored, not sent to analytics), by stage",
    )


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
        self.events_suppressed = _events_suppressed(meter)


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
        self.events_suppressed = _events_suppressed(meter)


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
    """Send traces, metrics and logs to Application Insights when a connection string is set.

    Not when an OpenTelemetry SDK is installed already: the Python worker configures the
    distro itself under `PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY` (and older workers under
    `PYTHON_ENABLE_OPENTELEMETRY`). A second configuration cannot replace the providers the
    first installed (the API keeps them, with a warning); it would only start exporters that
    nothing feeds.
    """
    if not settings.applicationinsights_connection_string:
        return False
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        logger.info("OpenTelemetry is configured already (by the Python worker); Azure Monitor is not configured again")
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor as configure

    configure(connection_string=settings.applicationinsights_connection_string)
    return True


class HostTraceContext(Protocol):
    """What the trace context of an invocation offers (`func.TraceContext`)."""

    @property
    def trace_parent(self) -> str:
        """The W3C `traceparent` of the host's activity for this invocation ("" if none)."""
        ...

    @property
    def trace_state(self) -> str:
        """Its W3C `tracestate` ("" if none)."""
        ...


class Invocation(Protocol):
    """What a function's invocation context offers (`func.Context`, the worker's or the local host's)."""

    @property
    def invocation_id(self) -> str:
        """The host's id of this invocation."""
        ...

    @property
    def trace_context(self) -> HostTraceContext:
        """The host activity's trace context."""
        ...


def invocation_parent(invocation: Invocation) -> otel_context.Context:
    """The OpenTelemetry context whose span is the host's activity for `invocation`.

    Falls back to the current context when the host handed over no valid `traceparent`
    (a function called directly, as in a test), so nothing starts a trace of its own by accident.
    """
    host = invocation.trace_context
    carrier = {TRACEPARENT: host.trace_parent or "", TRACESTATE: host.trace_state or ""}
    return _W3C.extract({name: value for name, value in carrier.items() if value}, context=otel_context.get_current())


@contextmanager
def invocation_span(
    invocation: Invocation,
    name: str,
    *,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    linked: Iterable[object] = (),
) -> Iterator[trace.Span]:
    """Run the block under a new current span, child of the host's activity for `invocation`.

    `linked`: trace contexts (W3C carriers, e.g. stored documents' `traceContext`) the work
    relates to without being part of their traces; each valid one becomes a span link.
    An exception leaving the block is recorded on the span, which then ends as an error.
    """
    links = [link for carrier in linked if (link := span_link(carrier)) is not None]
    with tracer.start_as_current_span(
        name,
        context=invocation_parent(invocation),
        kind=kind,
        links=links,
        attributes={"faas.invocation_id": invocation.invocation_id},
    ) as span:
        yield span


def message_parent(
    application_properties: Mapping[str, object], envelope_trace: Mapping[str, str]
) -> otel_context.Context:
    """The parent for the work on one queue message: the trace the message was sent in.

    Read as the Service Bus SDKs read it: the `traceparent` (and `tracestate`) application
    properties, else the older `Diagnostic-Id`; then the envelope's own copy of the producer's
    trace context; else the current context (the invocation's), for a message sent untraced.
    """
    parent = _W3C.extract(_w3c_carrier(envelope_trace), context=otel_context.get_current())
    return _W3C.extract(message_trace_carrier(application_properties), context=parent)


def message_trace_carrier(application_properties: Mapping[str, object]) -> dict[str, str]:
    """A message's trace context as a W3C carrier: `traceparent` (+ `tracestate`), else `Diagnostic-Id`.

    The order the Service Bus SDK reads them in (`MessagingClientDiagnostics.TryExtractTraceContext`);
    its senders set both to the same value.
    """
    traceparent = application_properties.get(TRACEPARENT)
    if isinstance(traceparent, str) and traceparent:
        tracestate = application_properties.get(TRACESTATE)
        return {TRACEPARENT: traceparent, **({TRACESTATE: tracestate} if isinstance(tracestate, str) else {})}
    diagnostic_id = application_properties.get(DIAGNOSTIC_ID)
    return {TRACEPARENT: diagnostic_id} if isinstance(diagnostic_id, str) and diagnostic_id else {}


def span_link(carrier: object) -> trace.Link | None:
    """A link to the span a W3C carrier (`{"traceparent": ..., "tracestate": ...}`) names, if valid."""
    if not isinstance(carrier, Mapping):
        return None
    span_context = trace.get_current_span(_W3C.extract(_w3c_carrier(carrier))).get_span_context()
    return trace.Link(span_context) if span_context.is_valid else None


def _w3c_carrier(values: Mapping[str, object]) -> dict[str, str]:
    return {name: value for name in (TRACEPARENT, TRACESTATE) if isinstance(value := values.get(name), str)}
