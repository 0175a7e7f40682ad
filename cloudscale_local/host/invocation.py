"""The invocation context (`func.Context`) the local host hands a function, with the host's trace.

The Functions host passes each invocation the W3C trace context of the activity it is
running the function under (`Activity.Current` when it dispatches to the worker), and the
Python worker hands it to the function as `context.trace_context`. Which activity that is
depends on the trigger; the local host starts the same one as a span of its own:

- HTTP: the request activity, a child of the request's `traceparent` header (W3C Trace
  Context), or the root of a new trace without one (`http_invocation`);
- Service Bus, one message per invocation: the processor's activity, a child of the
  message's trace context (its `traceparent` application property, else the older
  `Diagnostic-Id`), also linked to it (`service_bus_invocation`);
- Service Bus, a batch per invocation (cardinality many): the listener's activity, the root
  of a new trace, linked to every message's trace context;
- Cosmos DB change feed: the root of a new trace per batch (documents carry no trace context
  the trigger reads).

The host's span lives in the host, not in the function: it is not made the current span
while the function runs (the function runs in a separate worker process on Azure), so a
function that ignored its context would start traces of its own here as it would there.
docs/architecture.md ("Trace context") lists the sources.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import azure.functions as func

# The abstract types `func.Context` refers to; the package exports only `Context` itself.
from azure.functions._abc import RetryContext, TraceContext
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.domain.envelope import QueueMessage
from shared.telemetry import TRACEPARENT, TRACESTATE, message_trace_carrier, span_link

__all__ = [
    "DOCUMENTS",
    "HostRetryContext",
    "HostTraceContext",
    "InvocationContext",
    "bare_context",
    "change_feed_invocation",
    "http_invocation",
    "service_bus_invocation",
    "timer_invocation",
]

DOCUMENTS = "cloudscale.documents"
"""The attribute of a change-feed invocation's host span that counts its documents."""

_W3C = TraceContextTextMapPropagator()
_thread_local = threading.local()
# Looked up once: a proxy until the host installs its provider, then that provider's tracer.
_HOST_TRACER = trace.get_tracer("cloudscale.local_host")


class HostTraceContext(TraceContext):
    """The trace context of one invocation: the host activity's `traceparent` and `tracestate`."""

    def __init__(self, trace_parent: str = "", trace_state: str = "", attributes: Mapping[str, str] | None = None):
        self._trace_parent = trace_parent
        self._trace_state = trace_state
        self._attributes = dict(attributes or {})

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def trace_state(self) -> str:
        return self._trace_state

    @property
    def attributes(self) -> dict[str, str]:
        return self._attributes


class HostRetryContext(RetryContext):
    """Which retry of its `@retry` policy an invocation is (0: the first attempt)."""

    def __init__(self, retry_count: int = 0, max_retry_count: int = 0) -> None:
        self._retry_count = retry_count
        self._max_retry_count = max_retry_count

    @property
    def retry_count(self) -> int:
        return self._retry_count

    @property
    def max_retry_count(self) -> int:
        return self._max_retry_count

    @property
    def exception(self) -> Any:
        """The previous attempt's exception as the host reports it: none here."""
        return None


class InvocationContext(func.Context):
    """`func.Context` as the Python worker builds it for an invocation."""

    def __init__(
        self,
        function_name: str,
        trace_context: HostTraceContext,
        retry_context: HostRetryContext | None = None,
        *,
        invocation_id: str | None = None,
        function_directory: str | None = None,
    ) -> None:
        self._function_name = function_name
        self._trace_context = trace_context
        self._retry_context = retry_context or HostRetryContext()
        self._invocation_id = invocation_id or str(uuid.uuid4())
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        # The worker's is one `threading.local` shared by all invocations, too.
        return _thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        # The worker passes the function app's folder; the local host runs from it. Looked up
        # when asked (rarely), not for every invocation.
        return self._function_directory or os.getcwd()

    @property
    def trace_context(self) -> HostTraceContext:
        return self._trace_context

    @property
    def retry_context(self) -> HostRetryContext:
        return self._retry_context


def bare_context(function_name: str) -> InvocationContext:
    """A context with no host activity (an empty `traceparent`), for a function called directly."""
    return InvocationContext(function_name, HostTraceContext())


@contextmanager
def http_invocation(
    function_name: str, method: str, path: str, headers: Mapping[str, str], *, tracer: trace.Tracer | None = None
) -> Iterator[tuple[InvocationContext, trace.Span]]:
    """The host's request span for one HTTP invocation, and the context that carries it.

    `headers` are the request's, lower-cased. The caller sets the response status on the span.
    """
    parent = _W3C.extract({name: headers[name] for name in (TRACEPARENT, TRACESTATE) if name in headers})
    attributes = {
        "faas.trigger": "http",
        "faas.name": function_name,
        "http.request.method": method,
        "url.path": path,
    }
    with _host_span(tracer, function_name, trace.SpanKind.SERVER, parent, [], attributes) as (context, span):
        yield context, span


@contextmanager
def service_bus_invocation(
    function_name: str, messages: Sequence[QueueMessage], *, many: bool, tracer: trace.Tracer | None = None
) -> Iterator[InvocationContext]:
    """The host's processing span for one Service Bus invocation, and the context that carries it.

    One message (cardinality one): a child of the message's trace, linked to it as well. A
    batch (cardinality many): a new trace linked to every message's trace.
    """
    carriers = [message_trace_carrier(message.application_properties) for message in messages]
    links = [link for carrier in carriers if (link := span_link(carrier)) is not None]
    parent = otel_context.Context() if many or not carriers else _W3C.extract(carriers[0])
    attributes: dict[str, str | int] = {
        "faas.trigger": "pubsub",
        "faas.name": function_name,
        "messaging.system": "servicebus",
        "messaging.operation": "process",
    }
    if many:
        attributes["messaging.batch.message_count"] = len(messages)
    elif messages:
        attributes["messaging.message.id"] = messages[0].message_id
    with _host_span(tracer, function_name, trace.SpanKind.CONSUMER, parent, links, attributes) as (context, _):
        yield context


@contextmanager
def change_feed_invocation(
    function_name: str,
    *,
    retry_count: int = 0,
    max_retry_count: int = 0,
    documents: int | None = None,
    tracer: trace.Tracer | None = None,
) -> Iterator[InvocationContext]:
    """The host's span for one change-feed batch (a new trace), and the context that carries it.

    `documents`: the batch's size, on the span as `DOCUMENTS` (for the invocation's line).
    """
    extra = {} if documents is None else {DOCUMENTS: documents}
    with _new_trace_invocation(
        function_name, "datasource", trace.SpanKind.CONSUMER, retry_count, max_retry_count, tracer, extra
    ) as context:
        yield context


@contextmanager
def timer_invocation(
    function_name: str, *, retry_count: int = 0, max_retry_count: int = 0, tracer: trace.Tracer | None = None
) -> Iterator[InvocationContext]:
    """The host's span for one timer run (a new trace), and the context that carries it."""
    with _new_trace_invocation(
        function_name, "timer", trace.SpanKind.INTERNAL, retry_count, max_retry_count, tracer
    ) as context:
        yield context


@contextmanager
def _new_trace_invocation(
    function_name: str,
    trigger: str,
    kind: trace.SpanKind,
    retry_count: int,
    max_retry_count: int,
    tracer: trace.Tracer | None,
    extra: Mapping[str, str | int] | None = None,
) -> Iterator[InvocationContext]:
    attributes = {"faas.trigger": trigger, "faas.name": function_name, **(extra or {})}
    retry = HostRetryContext(retry_count, max_retry_count)
    with _host_span(tracer, function_name, kind, otel_context.Context(), [], attributes, retry) as host:
        yield host[0]


@contextmanager
def _host_span(
    tracer: trace.Tracer | None,
    name: str,
    kind: trace.SpanKind,
    parent: otel_context.Context,
    links: list[trace.Link],
    attributes: Mapping[str, str | int],
    retry: HostRetryContext | None = None,
) -> Iterator[tuple[InvocationContext, trace.Span]]:
    invocation_id = str(uuid.uuid4())
    # Started, not made current: the span is the host's (see the module docstring).
    span = (tracer or _HOST_TRACER).start_span(
        name, context=parent, kind=kind, links=links, attributes={**attributes, "faas.invocation_id": invocation_id}
    )
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=trace.set_span_in_context(span))
    context = InvocationContext(
        name,
        HostTraceContext(carrier.get(TRACEPARENT, ""), carrier.get(TRACESTATE, "")),
        retry,
        invocation_id=invocation_id,
    )
    try:
        yield context, span
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: the function failed")
        raise
    finally:
        span.end()
