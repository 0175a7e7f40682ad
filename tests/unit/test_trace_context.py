"""Functions continue the host's trace: the invocation's trace context, and a queue message's."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from opentelemetry import trace

from shared.settings import load_settings
from shared.telemetry import configure_azure_monitor, invocation_parent, invocation_span, message_parent
from tests.spans import RecordedSpans

HOST_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HOST_SPAN = "00f067aa0ba902b7"
HOST_TRACEPARENT = f"00-{HOST_TRACE}-{HOST_SPAN}-01"
PRODUCER_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
LEGACY_TRACEPARENT = "00-11111111111111111111111111111111-2222222222222222-01"
ENVELOPE_TRACEPARENT = "00-33333333333333333333333333333333-4444444444444444-01"


@dataclass(frozen=True)
class TraceContext:
    trace_parent: str = ""
    trace_state: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Invocation:
    """What the Python worker hands a function as `context`."""

    trace_context: TraceContext
    invocation_id: str = "c0ffee00-0000-4000-8000-000000000001"


def ids(context: trace.SpanContext) -> tuple[str, str]:
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def parent_of(otel_context: object) -> tuple[str, str]:
    return ids(trace.get_current_span(otel_context).get_span_context())  # type: ignore[arg-type]


def test_the_invocation_parent_is_the_host_activity() -> None:
    invocation = Invocation(TraceContext(HOST_TRACEPARENT, "vendor=1"))

    parent = trace.get_current_span(invocation_parent(invocation)).get_span_context()

    assert ids(parent) == (HOST_TRACE, HOST_SPAN)
    assert parent.is_remote
    assert parent.trace_state.get("vendor") == "1"


def test_the_work_of_an_invocation_is_a_child_of_the_host_activity(spans: RecordedSpans) -> None:
    with invocation_span(Invocation(TraceContext(HOST_TRACEPARENT)), "ingest events") as span:
        current = trace.get_current_span()

    recorded = spans.one("ingest events")
    assert current is span
    assert recorded.parent is not None
    assert ids(recorded.parent) == (HOST_TRACE, HOST_SPAN)
    assert format(recorded.context.trace_id, "032x") == HOST_TRACE
    assert recorded.attributes is not None
    assert recorded.attributes["faas.invocation_id"] == "c0ffee00-0000-4000-8000-000000000001"


def test_an_invocation_without_a_host_activity_continues_the_current_trace(spans: RecordedSpans) -> None:
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller, invocation_span(Invocation(TraceContext("")), "get event"):
        pass

    recorded = spans.one("get event")
    assert recorded.parent is not None
    assert recorded.parent.span_id == caller.get_span_context().span_id


def test_a_malformed_host_traceparent_is_not_a_parent(spans: RecordedSpans) -> None:
    with invocation_span(Invocation(TraceContext("00-not-a-trace-01")), "get event"):
        pass

    assert spans.one("get event").parent is None


def test_linked_trace_contexts_become_links_and_junk_is_skipped(spans: RecordedSpans) -> None:
    linked = [{"traceparent": PRODUCER_TRACEPARENT}, None, {"traceparent": "garbage"}, "text", {}]

    with invocation_span(Invocation(TraceContext(HOST_TRACEPARENT)), "events to analytics", linked=linked):
        pass

    links = spans.one("events to analytics").links
    assert [ids(link.context) for link in links] == [("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")]


def test_a_failure_is_recorded_on_the_span_and_raised(spans: RecordedSpans) -> None:
    invocation = Invocation(TraceContext(HOST_TRACEPARENT))
    with pytest.raises(RuntimeError, match="store down"), invocation_span(invocation, "process events"):
        raise RuntimeError("store down")

    recorded = spans.one("process events")
    assert recorded.status.status_code is trace.StatusCode.ERROR
    assert [event.name for event in recorded.events] == ["exception"]


def test_a_message_continues_its_traceparent_property() -> None:
    properties = {"traceparent": PRODUCER_TRACEPARENT, "tracestate": "sb=1", "Diagnostic-Id": LEGACY_TRACEPARENT}

    parent = trace.get_current_span(
        message_parent(properties, {"traceparent": ENVELOPE_TRACEPARENT})
    ).get_span_context()

    assert ids(parent) == ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")
    assert parent.trace_state.get("sb") == "1"


def test_a_message_with_only_a_diagnostic_id_continues_it() -> None:
    parent = message_parent({"Diagnostic-Id": LEGACY_TRACEPARENT}, {"traceparent": ENVELOPE_TRACEPARENT})

    assert parent_of(parent) == ("11111111111111111111111111111111", "2222222222222222")


def test_a_message_without_trace_properties_continues_its_envelope() -> None:
    parent = message_parent({"tenantId": "acme"}, {"traceparent": ENVELOPE_TRACEPARENT})

    assert parent_of(parent) == ("33333333333333333333333333333333", "4444444444444444")


def test_an_untraced_message_stays_in_the_invocation_trace(spans: RecordedSpans) -> None:
    with trace.get_tracer("test").start_as_current_span("process events") as invocation:
        parent = message_parent({}, {})

    assert trace.get_current_span(parent).get_span_context() == invocation.get_span_context()


def test_azure_monitor_is_not_configured_over_the_workers_configuration(spans: RecordedSpans) -> None:
    # `spans` installed an SDK tracer provider, as the Python worker's own configuration does.
    settings = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-0"})

    assert configure_azure_monitor(settings) is False
