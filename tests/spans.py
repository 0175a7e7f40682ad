"""Recording spans in a test process: one SDK tracer provider, installed once, with an in-memory exporter.

OpenTelemetry lets a process install its global tracer provider once, so every test shares
this one and clears what it recorded before it starts (the `spans` fixture).
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

__all__ = ["RecordedSpans", "recorded_spans"]

_exporter: InMemorySpanExporter | None = None


class RecordedSpans:
    """The spans ended since the test began, looked up by name."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.all() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r}: {[span.name for span in self.all()]}"
        return found[0]


def recorded_spans() -> RecordedSpans:
    """Install the recording provider (the first time) and forget the spans recorded so far."""
    global _exporter
    if _exporter is None:
        _exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:
            raise RuntimeError("another tracer provider was installed in this test process first")
    _exporter.clear()
    return RecordedSpans(_exporter)
