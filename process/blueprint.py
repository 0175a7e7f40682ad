"""The process stage's functions: the Service Bus trigger, and reading a stored event back.

`process_event` takes a batch of messages per invocation (cardinality many, at most
`maxMessageBatchSize` from host.json): one store round trip and one settlement for the whole
batch is what lets one instance keep up with ingest. The host runs one batch at a time per
instance and does not renew its locks (`shared/domain/delivery.py` has what follows from
that); more batches at once means more instances. The function returns normally when every message is done,
which lets the host complete them, and raises only when the store stayed down for the whole
retry budget, so the host abandons the batch for a later delivery.
"""

from __future__ import annotations

import asyncio
import logging
import re
import typing
from collections import Counter
from datetime import UTC

import azure.functions as func

from process.read_access import ReadRefusedError
from process.service import DeliveredMessage
from shared.assembly import event_processor, event_read_access, event_reader
from shared.domain.events import TENANT_ID_PATTERN, canonical_event_id
from shared.http import error_response, json_response
from shared.ports import PortError
from shared.settings import SettingsError
from shared.telemetry import invocation_span

__all__ = ["bp"]

logger = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated

MISCONFIGURED_HOLD_SECONDS = 240.0
"""As long as the default store retry budget: a misconfiguration is treated like an outage."""

# Matched with fullmatch: `$` would also accept a trailing newline.
_TENANT_ID = re.compile(TENANT_ID_PATTERN)


@bp.function_name("process_event")
@bp.service_bus_queue_trigger(
    arg_name="messages",
    queue_name="%CLOUDSCALE_EVENTS_QUEUE%",
    connection="ServiceBusConnection",
    cardinality=func.Cardinality.MANY,
)
# typing.List, not list[...]: the Python worker refuses builtin generics in binding annotations
# ("invalid non-type annotation"), and one refused function leaves the whole app serving nothing.
async def process_event(
    messages: typing.List[func.ServiceBusMessage],  # noqa: UP006
    context: func.Context,
) -> None:
    """Score, enrich and store a batch of queued events (idempotent: a redelivery changes nothing).

    The batch runs under the host's activity for this invocation; each event's own work
    continues the trace its message was sent in (see `ProcessService.handle_batch`).
    """
    with invocation_span(context, "process events") as span:
        try:
            processor = event_processor()
        except SettingsError:
            # Not the messages' fault: failing at once would spend their deliveries in seconds and
            # dead-letter good events. Hold them as long as a store outage would, then hand them back.
            logger.critical("the process stage is misconfigured; holding %d message(s)", len(messages), exc_info=True)
            await asyncio.sleep(MISCONFIGURED_HOLD_SECONDS)
            raise
        outcomes = await processor.handle_batch([delivered_message(message) for message in messages])
        if span.is_recording():
            # The batch's outcomes on the invocation's span: Application Insights shows them, and
            # the local host prints them in the invocation's line.
            for outcome, count in Counter(outcome.value for outcome in outcomes).items():
                span.set_attribute(f"cloudscale.events.{outcome}", count)


def delivered_message(message: func.ServiceBusMessage) -> DeliveredMessage:
    """The trigger's message as the broker-neutral type the use case takes."""
    properties = {
        str(key): value for key, value in (message.application_properties or {}).items() if isinstance(value, str | int)
    }
    enqueued_at = message.enqueued_time_utc
    if enqueued_at is not None and enqueued_at.tzinfo is None:
        # The host sends EnqueuedTimeUtc without an offset (and the library then parses it
        # naive); it is UTC by name and by definition.
        enqueued_at = enqueued_at.replace(tzinfo=UTC)
    return DeliveredMessage(
        body=message.get_body(),
        message_id=message.message_id,
        enqueued_at=enqueued_at,
        delivery_count=message.delivery_count or 1,
        content_type=message.content_type,
        subject=message.subject or message.label,
        correlation_id=message.correlation_id,
        application_properties=properties,
    )


@bp.function_name("get_event")
@bp.route(route="events/{tenantId}/{eventId}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def get_event(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """The stored, enriched event with its fraud result; 404 until the process stage stored it.

    Anonymous to the host: the app checks the caller's write key (`process.read_access`).
    """
    with invocation_span(context, "get event"):
        return await _get_event(req)


async def _get_event(req: func.HttpRequest) -> func.HttpResponse:
    tenant_id = req.route_params.get("tenantId", "")
    event_id = req.route_params.get("eventId", "")
    try:
        access = await event_read_access().check(req.headers.get("authorization"), tenant_id)
    except ReadRefusedError as refused:
        return _refusal_response(refused)
    except SettingsError:
        logger.exception("the process stage is misconfigured")
        return error_response(503, "misconfigured", "the service is misconfigured; see its log", retry_after=60)
    if not _TENANT_ID.fullmatch(tenant_id):
        return error_response(400, "invalid_tenant_id", "tenantId must be 1-64 letters, digits, '_', '.' or '-'")
    try:
        event_id = canonical_event_id(event_id)
    except ValueError as exc:
        return error_response(400, "invalid_event_id", str(exc))
    try:
        stored = await event_reader().get(tenant_id, event_id)
    except SettingsError:
        logger.exception("the process stage is misconfigured")
        return error_response(503, "misconfigured", "the service is misconfigured; see its log", retry_after=60)
    except PortError as exc:
        logger.warning("reading event %s failed: %s", event_id, exc)
        return error_response(503, "store_unavailable", "the event store is unavailable; retry later", retry_after=5)
    if stored is None or access == "not_found":
        # Another tenant's key gets exactly the answer of an event not stored: nothing to tell them apart.
        return error_response(404, "not_found", f"event {event_id} of tenant {tenant_id} is not stored (yet)")
    return json_response(200, stored.to_document())


def _refusal_response(refused: ReadRefusedError) -> func.HttpResponse:
    retry_after = 5 if refused.status == 503 else None
    response = error_response(refused.status, refused.code, refused.message, retry_after=retry_after)
    if refused.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="cloudscale"'
    return response
