"""The local host hands every function a `func.Context` carrying the host's trace, as the Functions host does.

Driven through the host's real parts: the ASGI gateway (an HTTP request in memory), the
Service Bus trigger loop over a real embedded queue file, and the change-feed builder.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import azure.functions as func
import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

from cloudscale_local.host.functions import HttpFunction, ServiceBusFunction
from cloudscale_local.host.gateway import Gateway
from cloudscale_local.host.host_config import HostConfig, ServiceBusOptions
from cloudscale_local.host.invocation import change_feed_invocation
from cloudscale_local.host.routing import RouteTemplate
from cloudscale_local.host.servicebus_trigger import ServiceBusTrigger
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.domain.envelope import QueueMessage
from tests.spans import RecordedSpans

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


def ids(context: trace.SpanContext | None) -> tuple[str, str]:
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def names(context: func.Context, span: ReadableSpan) -> bool:
    """Whether the context's `traceparent` names `span` (trace id and span id; flags may vary)."""
    _, trace_id, span_id, _ = context.trace_context.trace_parent.split("-")
    return (trace_id, span_id) == ids(span.context)


class Seen:
    """What a function saw of its invocation: the context, and whether any span was current."""

    def __init__(self) -> None:
        self.contexts: list[func.Context] = []
        self.current_span_valid: list[bool] = []

    def record(self, context: func.Context) -> None:
        self.contexts.append(context)
        self.current_span_valid.append(trace.get_current_span().get_span_context().is_valid)


async def call_gateway(seen: Seen, headers: dict[str, str], status: int = 202) -> httpx.Response:
    async def ingest_events(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        seen.record(context)
        return func.HttpResponse(b"{}", status_code=status, mimetype="application/json")

    function = HttpFunction(
        name="ingest_events",
        route=RouteTemplate.compile("events"),
        methods=("POST",),
        handler=ingest_events,
        argument="req",
    )
    # The gateway types its scope as a dict, httpx as any mutable mapping: the same ASGI app.
    transport = httpx.ASGITransport(app=Gateway([function]), client=("127.0.0.1", 50000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:7071") as client:
        # Under a span of the caller's own, which must not leak into the function.
        with trace.get_tracer("test").start_as_current_span("caller"):
            return await client.post("/api/events", content=b"{}", headers=headers)


async def test_an_http_function_runs_under_a_request_span_continuing_the_callers_traceparent(
    spans: RecordedSpans,
) -> None:
    seen = Seen()

    response = await call_gateway(seen, {"traceparent": traceparent(CALLER_TRACE, CALLER_SPAN)})

    assert response.status_code == 202
    request = spans.one("ingest_events")
    assert request.kind is trace.SpanKind.SERVER
    assert ids(request.parent) == (CALLER_TRACE, CALLER_SPAN)
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 202
    assert request.attributes["http.request.method"] == "POST"
    [context] = seen.contexts
    assert names(context, request)
    assert context.function_name == "ingest_events"
    assert context.invocation_id == request.attributes["faas.invocation_id"]
    # The host's span is the host's: the function sees it only through its context.
    assert seen.current_span_valid == [False]


async def test_an_http_request_without_a_traceparent_starts_a_trace(spans: RecordedSpans) -> None:
    seen = Seen()

    await call_gateway(seen, {})

    request = spans.one("ingest_events")
    assert request.parent is None
    assert names(seen.contexts[0], request)


async def test_a_server_error_marks_the_request_span_failed(spans: RecordedSpans) -> None:
    await call_gateway(Seen(), {}, status=503)

    request = spans.one("ingest_events")
    assert request.status.status_code is trace.StatusCode.ERROR
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 503


def traced_message(n: int, properties: dict[str, str | int]) -> QueueMessage:
    return QueueMessage(message_id=f"m-{n}", body=b"{}", application_properties=properties)


async def run_trigger(
    tmp_path: Path, messages: list[QueueMessage], handler: Callable[..., Awaitable[None]], *, many: bool
) -> None:
    queue = EmbeddedQueue(tmp_path / "queue.sqlite3", lock_seconds=5, max_delivery_count=3)
    function = ServiceBusFunction(
        name="process_event",
        queue_name="events",
        connection="ServiceBusConnection",
        handler=handler,
        argument="messages",
        many=many,
    )
    options = ServiceBusOptions(max_concurrent_calls=1, max_auto_lock_renewal_seconds=10, max_message_batch_size=10)
    config = HostConfig(service_bus=options)
    trigger = ServiceBusTrigger(function, queue, config)
    await queue.send(messages)
    trigger.start()
    deadline = time.monotonic() + 10
    while trigger.stats.completed < len(messages):
        assert time.monotonic() < deadline, "the messages were not processed in time"
        await asyncio.sleep(0.02)
    await trigger.stop()
    queue.close()


async def test_one_message_is_processed_in_its_senders_trace(tmp_path: Path, spans: RecordedSpans) -> None:
    seen = Seen()
    sent = traced_message(1, {"traceparent": traceparent(CALLER_TRACE, CALLER_SPAN), "tracestate": "sb=1"})

    async def process_event(messages: func.ServiceBusMessage, context: func.Context) -> None:
        seen.record(context)

    await run_trigger(tmp_path, [sent], process_event, many=False)

    processing = spans.one("process_event")
    assert processing.kind is trace.SpanKind.CONSUMER
    assert ids(processing.parent) == (CALLER_TRACE, CALLER_SPAN)
    assert [ids(link.context) for link in processing.links] == [(CALLER_TRACE, CALLER_SPAN)]
    [context] = seen.contexts
    assert names(context, processing)
    assert context.trace_context.trace_state == "sb=1"
    assert seen.current_span_valid == [False]


async def test_a_diagnostic_id_is_continued_when_there_is_no_traceparent(tmp_path: Path, spans: RecordedSpans) -> None:
    sent = traced_message(1, {"Diagnostic-Id": traceparent(CALLER_TRACE, CALLER_SPAN)})

    async def process_event(messages: func.ServiceBusMessage, context: func.Context) -> None:
        pass

    await run_trigger(tmp_path, [sent], process_event, many=False)

    assert ids(spans.one("process_event").parent) == (CALLER_TRACE, CALLER_SPAN)


async def test_a_batch_is_a_new_trace_linked_to_every_message(tmp_path: Path, spans: RecordedSpans) -> None:
    seen = Seen()
    senders = [(f"{n:032x}", f"{n:016x}") for n in (1, 2, 3)]
    batch = [traced_message(n, {"traceparent": traceparent(*sender)}) for n, sender in enumerate(senders)]

    async def process_event(messages: list[func.ServiceBusMessage], context: func.Context) -> None:
        seen.record(context)

    await run_trigger(tmp_path, batch, process_event, many=True)

    processing = spans.one("process_event")
    assert processing.parent is None
    assert sorted(ids(link.context) for link in processing.links) == senders
    assert processing.attributes is not None
    assert processing.attributes["messaging.batch.message_count"] == 3
    [context] = seen.contexts
    assert names(context, processing)


async def test_a_failed_invocation_marks_the_host_span_failed(tmp_path: Path, spans: RecordedSpans) -> None:
    calls: list[int] = []

    async def process_event(messages: func.ServiceBusMessage, context: func.Context) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the store is down")

    await run_trigger(tmp_path, [traced_message(1, {})], process_event, many=False)

    failed, succeeded = sorted(spans.named("process_event"), key=lambda span: span.start_time or 0)
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert succeeded.status.status_code is not trace.StatusCode.ERROR


def test_a_change_feed_batch_is_a_new_trace_with_its_retry_count(spans: RecordedSpans) -> None:
    with change_feed_invocation("events_to_analytics", retry_count=2, max_retry_count=12) as context:
        pass

    batch = spans.one("events_to_analytics")
    assert batch.parent is None
    assert names(context, batch)
    assert (context.retry_context.retry_count, context.retry_context.max_retry_count) == (2, 12)


@pytest.mark.parametrize("many", [False, True])
async def test_a_function_without_a_context_parameter_is_called_as_before(tmp_path: Path, many: bool) -> None:
    got: list[object] = []

    async def process_event(messages: object) -> None:
        got.append(messages)

    await run_trigger(tmp_path, [traced_message(1, {})], process_event, many=many)

    assert len(got) == 1
