"""The line per invocation, read from the host's span and the function's once the invocation ended."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from cloudscale_local.host.invocation import change_feed_invocation, http_invocation, service_bus_invocation
from cloudscale_local.host.invocation_lines import InvocationLine, InvocationLines, InvocationSampler
from shared.domain.envelope import QueueMessage
from shared.telemetry import invocation_parent


@pytest.fixture
def tracer() -> trace.Tracer:
    """A provider as the host installs it without a trace file: nothing sampled, invocation spans recorded."""
    provider = TracerProvider(sampler=InvocationSampler(ALWAYS_OFF))
    provider.add_span_processor(InvocationLines())
    return provider.get_tracer("test")


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name.startswith("Function.")]


def test_an_http_invocation_line_has_the_request_status_and_what_the_function_span_said(
    tracer: trace.Tracer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # GIVEN an HTTP invocation whose function sets the ingest attributes on its own span
    with http_invocation("ingest_events", "POST", "/api/events", {}, tracer=tracer) as (context, span):
        with tracer.start_as_current_span(
            "ingest events",
            context=invocation_parent(context),
            attributes={"faas.invocation_id": context.invocation_id},
        ) as function_span:
            assert function_span.is_recording()
            function_span.set_attribute("cloudscale.tenant_id", "acme")
            function_span.set_attribute("cloudscale.events.accepted", 2)
            function_span.set_attribute("cloudscale.events.rejected", 1)
            function_span.set_attribute("cloudscale.write_key_id", "key-1")
            # an inner span of the app's is not recorded (nothing samples it)
            assert not tracer.start_span("inner", context=trace.set_span_in_context(function_span)).is_recording()
        span.set_attribute("http.response.status_code", 202)
    # THEN one INFO line on the function's category says it all, and nothing the line does not show
    (record,) = lines(caplog)
    assert record.name == "Function.ingest_events"
    assert record.levelno == logging.INFO
    assert record.getMessage().startswith(
        f"Executed 'Functions.ingest_events' (Succeeded, Id={context.invocation_id}, "
    )
    assert record.getMessage().endswith("ms) POST /api/events 202 tenant=acme accepted=2 rejected=1")
    assert "key-1" not in record.getMessage()


def test_a_function_that_answered_500_succeeded_one_that_raised_failed(
    tracer: trace.Tracer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with http_invocation("health", "GET", "/api/health", {}, tracer=tracer) as (_, span):
        span.set_attribute("http.response.status_code", 500)
        span.set_status(trace.StatusCode.ERROR)
    with pytest.raises(RuntimeError), change_feed_invocation("events_to_analytics", documents=7, tracer=tracer):
        raise RuntimeError("analytics down")
    answered, raised = lines(caplog)
    assert "(Succeeded, " in answered.getMessage()
    assert answered.getMessage().endswith("GET /api/health 500")
    assert "(Failed, " in raised.getMessage()
    assert raised.getMessage().endswith("documents=7")
    assert raised.levelno == logging.ERROR


def test_a_service_bus_line_counts_the_messages(tracer: trace.Tracer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    messages = [QueueMessage(message_id=f"acme/{n}", body=b"{}") for n in range(3)]
    with service_bus_invocation("process_event", messages, many=True, tracer=tracer):
        pass
    with service_bus_invocation("process_one", messages[:1], many=False, tracer=tracer):
        pass
    batch, one = lines(caplog)
    assert batch.getMessage().endswith("messages=3")
    assert one.getMessage().endswith("messages=1")


def test_no_line_when_the_category_is_off(tracer: trace.Tracer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with http_invocation("health", "GET", "/api/health", {}, tracer=tracer):
        pass
    assert lines(caplog) == []


def test_a_path_with_control_characters_is_shown_escaped_never_sent_to_the_terminal() -> None:
    # Any web page can make the browser GET http://127.0.0.1:7071/api/events/%1b%5d0;x%07/1 (an image):
    # the server decodes the path, and the line must not carry its escapes to the host's terminal.
    line = InvocationLine(
        "get_event", "id-1", True, 2, {"tenant": "a\x1b[2J"}, request="GET /api/events/\x1b]0;x\x07/1", status=404
    )
    text = line.text()
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "GET /api/events/\\x1b]0;x\\x07/1 404" in text
    assert "tenant=a\\x1b[2J" in text
