"""A line per invocation, as `func start` prints, read from the invocation's spans once it ended.

The Functions host logs every invocation's end on the function's category (`Function.<name>`):
"Executed 'Functions.<name>' (Succeeded, Id=<invocation id>, Duration=<n>ms)" at Information, or
"(Failed, …)" at Error, and Core Tools shows those categories by default (sources in
docs/architecture.md, "The Functions host's rules"). The local host prints the same words on the
same logger name, then what the trigger adds, read from the invocation's spans:

- the host's span (`cloudscale_local.host.invocation`): the HTTP method, path and status; the
  messages of a Service Bus invocation; the documents of a change-feed batch;
- the function's own span (`shared.telemetry.invocation_span`, which carries the invocation id):
  what the app set on it under `cloudscale.*` (ingest: `cloudscale.tenant_id`,
  `cloudscale.events.accepted`, `cloudscale.events.rejected`; process: `cloudscale.events.stored`,
  `.duplicate`, `.dead_lettered`, `.suppressed`), the attributes Application Insights shows for
  the same invocation on Azure.

"Failed" means what it means to the host: the function raised (or ran past `functionTimeout`,
or was cut short), recorded on the host's span as an exception; an HTTP function that answered
500 succeeded. Only the end of an invocation is printed, not "Executing …" too: one line each.

Reading a span needs it recorded: `InvocationSampler` records (without exporting) the spans that
carry an invocation id, the host's and the function's, and leaves every other span to the sampler
it wraps. `cloudscale run --quiet` installs neither, so it costs nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from cloudscale_local.host.invocation import DOCUMENTS
from cloudscale_local.terminal_text import escape_controls

__all__ = ["InvocationLine", "InvocationLines", "InvocationSampler", "host_line"]

INVOCATION_ID = "faas.invocation_id"
TRIGGER = "faas.trigger"
_APP_PREFIX = "cloudscale."
_SHOWN_APP_ATTRIBUTES = {
    "cloudscale.tenant_id": "tenant",
    "cloudscale.events.accepted": "accepted",
    "cloudscale.events.rejected": "rejected",
    "cloudscale.events.stored": "stored",
    "cloudscale.events.duplicate": "duplicate",
    "cloudscale.events.dead_lettered": "dead_lettered",
    "cloudscale.events.suppressed": "suppressed",
}
"""What of the function's span goes into the line, and under which name (nothing else: a key id, say)."""
MAX_PENDING = 10_000
"""Function spans kept waiting for their host span (a function called without one leaves its entry,
which goes once this many newer ones wait)."""


@dataclass(frozen=True, slots=True)
class InvocationLine:
    """One ended invocation, as the line says it."""

    function: str
    invocation_id: str
    succeeded: bool
    duration_ms: int
    details: Mapping[str, object] = field(default_factory=dict)
    """What the trigger and the app add, `name=value` each: `messages`, `documents`, `tenant`, `accepted`..."""
    request: str | None = None
    """The HTTP method and path (HTTP functions)."""
    status: int | None = None
    """The HTTP status answered (HTTP functions)."""

    @property
    def outcome(self) -> str:
        return "Succeeded" if self.succeeded else "Failed"

    @property
    def summary_key(self) -> str:
        """What a rate-limit summary counts it as: `ingest_events 202`, `process_event Succeeded`."""
        return f"{self.function} {self.status if self.status is not None and self.succeeded else self.outcome}"

    def text(self) -> str:
        head = (
            f"Executed 'Functions.{self.function}' ({self.outcome}, Id={self.invocation_id}, "
            f"Duration={self.duration_ms}ms)"
        )
        parts = [head]
        if self.request is not None:
            parts.append(self.request if self.status is None else f"{self.request} {self.status}")
        parts.extend(f"{name}={value}" for name, value in self.details.items())
        # A path is whatever the client asked for (decoded): its escapes must not reach the terminal.
        return escape_controls(" ".join(parts))


class InvocationSampler(Sampler):
    """Records the spans that carry an invocation id (the host's and the function's); the rest as `base` says.

    Recorded, not sampled, unless `base` samples them: the trace flags the app propagates are the
    ones `base` decides, so a span file or an exporter sees exactly what it saw without this.
    """

    def __init__(self, base: Sampler) -> None:
        self._base = base

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self._base.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        if result.decision is Decision.DROP and attributes and INVOCATION_ID in attributes:
            return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"InvocationSampler{{{self._base.get_description()}}}"


class InvocationLines(SpanProcessor):
    """Logs a line when a host invocation span ends, with what its function's span said."""

    def __init__(self) -> None:
        self._app: dict[str, dict[str, object]] = {}
        # Spans end on the event loop and on worker threads (a function run in a thread): the
        # bookkeeping must never raise into a span's end, which would fail its function.
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        attributes = span.attributes or {}
        invocation_id = attributes.get(INVOCATION_ID)
        if not isinstance(invocation_id, str):
            return
        if TRIGGER not in attributes:
            # The function's span ends first (it is a child of the host's): keep what it said.
            said = {key: value for key, value in attributes.items() if key.startswith(_APP_PREFIX)}
            if said:
                with self._lock:
                    if len(self._app) >= MAX_PENDING:
                        # Oldest first (insertion order): an entry whose host span never came.
                        del self._app[next(iter(self._app))]
                    self._app.setdefault(invocation_id, {}).update(said)
            return
        with self._lock:
            said_by_app = self._app.pop(invocation_id, {})
        line = host_line(span, said_by_app)
        logger = _function_logger(line.function)
        level = logging.INFO if line.succeeded else logging.ERROR
        if logger.isEnabledFor(level):
            logger.log(level, "%s", line.text(), extra={"invocation": line})

    def shutdown(self) -> None:
        with self._lock:
            self._app.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def host_line(span: ReadableSpan, app: Mapping[str, object]) -> InvocationLine:
    """The line of an ended host span, with the function's `cloudscale.*` attributes `app`."""
    attributes = span.attributes or {}
    failed = any(event.name == "exception" for event in span.events)
    duration = ((span.end_time or 0) - (span.start_time or 0)) // 1_000_000
    details: dict[str, object] = {}
    trigger = attributes.get(TRIGGER)
    status = attributes.get("http.response.status_code")
    request = None
    if trigger == "http":
        request = f"{attributes.get('http.request.method', '')} {attributes.get('url.path', '')}"
    elif trigger == "pubsub":
        details["messages"] = attributes.get("messaging.batch.message_count", 1)
    elif DOCUMENTS in attributes:
        details["documents"] = attributes[DOCUMENTS]
    for key, name in _SHOWN_APP_ATTRIBUTES.items():
        if key in app:
            details[name] = app[key]
    return InvocationLine(
        function=str(attributes.get("faas.name", span.name)),
        invocation_id=str(attributes.get(INVOCATION_ID, "")),
        succeeded=not failed,
        duration_ms=int(duration),
        details=details,
        request=request,
        status=status if isinstance(status, int) else None,
    )


@cache
def _function_logger(function: str) -> logging.Logger:
    # The host's category for a function's own lines (`LogCategories.CreateFunctionCategory`).
    return logging.getLogger(f"Function.{function}")
