"""The OpenTelemetry providers a host process installs: Prometheus for `/metrics`, spans to a file."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from opentelemetry import metrics, trace
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, DEFAULT_ON, Sampler

from cloudscale_local.host.invocation_lines import InvocationLines, InvocationSampler

__all__ = ["telemetry_providers"]


@contextlib.contextmanager
def telemetry_providers(
    trace_file: Path | None, instance: str | None = None, *, invocation_lines: bool = False
) -> Iterator[None]:
    """Install the metric and trace providers for the host's lifetime; with `trace_file`, export spans to it.

    `instance` names the instance in the resource (`service.instance.id`), as each Functions
    host instance is told apart in Application Insights (`cloud_RoleInstance`).

    Spans are written as each ends (a simple processor, no batching), so a reader sees a span
    as soon as its invocation is over; this is for inspection, not for production volumes.

    `invocation_lines`: log a line per invocation (`cloudscale_local.host.invocation_lines`), which
    records the spans carrying an invocation id, two per invocation, even without a trace file.
    """
    attributes = {"service.name": "cloudscale"} | ({} if instance is None else {"service.instance.id": instance})
    resource = Resource.create(attributes)
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[PrometheusMetricReader()]))
    # Without a trace file nothing exports a span, so none is sampled (`ALWAYS_OFF`): the app then
    # builds no span objects but the two of each invocation the lines read (or none with --quiet),
    # yet every span still gets its ids, so trace context propagates as before (with the W3C
    # sampled flag off, which says just that).
    sampler: Sampler | None = None if trace_file is not None else ALWAYS_OFF
    if invocation_lines:
        sampler = InvocationSampler(sampler or DEFAULT_ON)
    provider = TracerProvider(resource=resource, sampler=sampler)
    if invocation_lines:
        provider.add_span_processor(InvocationLines())
    with contextlib.ExitStack() as stack:
        if trace_file is not None:
            out = stack.enter_context(trace_file.open("a", encoding="utf-8"))
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=out, formatter=_json_line)))
        trace.set_tracer_provider(provider)
        try:
            yield
        finally:
            provider.shutdown()


def _json_line(span: ReadableSpan) -> str:
    return str(span.to_json(indent=None)) + "\n"
