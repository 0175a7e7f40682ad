"""Trigger inputs shaped as the Functions host sends them to a Python worker.

Each builder follows the host's conversion to `TypedData`
(`src/WebJobs.Script.Grpc/MessageExtensions/GrpcMessageConversionExtensions.cs` in
github.com/Azure/azure-functions-host) for the capabilities the Python library declares
(`RawHttpBodyBytes`, `RpcHttpBodyOnly`, `TypedDataCollection`, `RpcHttpTriggerMetadataRemoved`;
not `IncludeEmptyEntriesInMessagePayload`):

- HTTP: `RpcHttp` with the URL, the method, headers with lower-case names, route values as
  `params`, non-empty query values, and the body as bytes (only when there is one); no
  trigger metadata.
- Arrays in trigger metadata: `string[]` becomes `collection_string` with null and empty
  entries dropped, `long[]` `collection_sint64`, `byte[][]` `collection_bytes`; anything
  else (`int[]`, `DateTime[]`, dictionaries) is serialised to JSON.
- Service Bus, cardinality many: the binding data of
  `sdk/servicebus/Microsoft.Azure.WebJobs.Extensions.ServiceBus/src/Triggers/
  ServiceBusTriggerBindingStrategy.cs` (github.com/Azure/azure-sdk-for-net): one array per
  property (`MessageIdArray`, `DeliveryCountArray`, `EnqueuedTimeUtcArray`,
  `ApplicationPropertiesArray` and its older name `UserPropertiesArray`, ...).
  `EnqueuedTimeUtc` is `DateTimeOffset.DateTime`, which JSON-serialises without an offset.
- Cosmos DB change feed: the batch of documents as one JSON array, each with its system
  properties (`id`, `_rid`, `_self`, `_etag`, `_ts`, `_lsn`).
- Timer: `{"Schedule", "ScheduleStatus", "IsPastDue"}` as JSON.

Nothing here imports the app: these are the host's shapes, built from plain values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from tests.conformance import protos

__all__ = [
    "APP_HOST",
    "QueuedMessage",
    "cosmos_documents",
    "http_request",
    "service_bus_batch",
    "timer",
]

APP_HOST = "cloudscale-func.azurewebsites.net"


def http_request(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    route: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
) -> protos.TypedData:
    """An HTTP trigger's input: `path` is what the client asked for (`/api/...`)."""
    query_text = "&".join(f"{key}={value}" for key, value in (query or {}).items())
    http = protos.RpcHttp(
        method=method,
        url=f"https://{APP_HOST}{path}" + (f"?{query_text}" if query_text else ""),
        headers={name.lower(): value for name, value in {"host": APP_HOST, **(headers or {})}.items()},
        params=dict(route or {}),
        query={key: value for key, value in (query or {}).items() if value},
        body=protos.TypedData(bytes=body) if body else None,
    )
    return protos.TypedData(http=http)


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """What the Service Bus extension knows of one received message."""

    body: bytes
    message_id: str
    sequence_number: int
    enqueued_time: datetime
    delivery_count: int = 1
    lock_token: str = ""
    content_type: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    application_properties: Mapping[str, Any] = field(default_factory=dict)


def _strings(values: Sequence[str | None]) -> protos.TypedData:
    # As the host does without IncludeEmptyEntriesInMessagePayload: null and "" are dropped,
    # so a shorter array no longer lines up with the messages.
    return protos.TypedData(collection_string=protos.CollectionString(string=[value for value in values if value]))


def _json(value: object) -> protos.TypedData:
    return protos.TypedData(json=json.dumps(value, separators=(",", ":")))


def _dotnet_datetime(moment: datetime) -> str:
    """Json.NET's text for a `DateTime` of kind Unspecified: no offset, up to 7 fraction digits."""
    text = moment.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text.rstrip("0").rstrip(".")


def _dotnet_datetimeoffset(moment: datetime) -> str:
    return _dotnet_datetime(moment) + "+00:00"


def service_bus_batch(
    messages: Sequence[QueuedMessage],
    *,
    body_form: Literal["collection_bytes", "collection_string"] = "collection_bytes",
) -> tuple[protos.TypedData, dict[str, protos.TypedData]]:
    """A cardinality-many trigger's input and trigger metadata for `messages`."""
    if body_form == "collection_bytes":
        data = protos.TypedData(collection_bytes=protos.CollectionBytes(bytes=[m.body for m in messages]))
    else:
        data = protos.TypedData(
            collection_string=protos.CollectionString(string=[m.body.decode("utf-8") for m in messages])
        )
    expires = [m.enqueued_time + timedelta(days=14) for m in messages]
    properties = [dict(m.application_properties) for m in messages]
    metadata = {
        "DeliveryCountArray": _json([m.delivery_count for m in messages]),
        "DeadLetterSourceArray": _strings([None for _ in messages]),
        "LockTokenArray": _strings([m.lock_token for m in messages]),
        "ExpiresAtUtcArray": _json([_dotnet_datetime(moment) for moment in expires]),
        "ExpiresAtArray": _json([_dotnet_datetimeoffset(moment) for moment in expires]),
        "EnqueuedTimeUtcArray": _json([_dotnet_datetime(m.enqueued_time) for m in messages]),
        "EnqueuedTimeArray": _json([_dotnet_datetimeoffset(m.enqueued_time) for m in messages]),
        "MessageIdArray": _strings([m.message_id for m in messages]),
        "ContentTypeArray": _strings([m.content_type for m in messages]),
        "ReplyToArray": _strings([None for _ in messages]),
        "SequenceNumberArray": protos.TypedData(
            collection_sint64=protos.CollectionSInt64(sint64=[m.sequence_number for m in messages])
        ),
        "ToArray": _strings([None for _ in messages]),
        "SubjectArray": _strings([m.subject for m in messages]),
        "LabelArray": _strings([m.subject for m in messages]),
        "CorrelationIdArray": _strings([m.correlation_id for m in messages]),
        "ApplicationPropertiesArray": _json(properties),
        "UserPropertiesArray": _json(properties),
        "SessionIdArray": _strings([None for _ in messages]),
        "ReplyToSessionIdArray": _strings([None for _ in messages]),
        "PartitionKeyArray": _strings([None for _ in messages]),
        "TransactionPartitionKeyArray": _strings([None for _ in messages]),
        "sys": _json(
            {
                "MethodName": "process_event",
                "UtcNow": _dotnet_datetimeoffset(datetime.now(UTC)),
                "RandGuid": "bb38deae-cc75-49f2-89f5-96ec6eb857db",
            }
        ),
    }
    return data, metadata


def cosmos_documents(documents: Sequence[Mapping[str, Any]]) -> protos.TypedData:
    """A change-feed batch: `documents` already carry their system properties."""
    return _json(list(documents))


def timer(*, past_due: bool = False, now: datetime | None = None) -> protos.TypedData:
    """A timer trigger's input (`TimerInfo` as JSON)."""
    moment = now or datetime.now(UTC)
    status = {
        "Last": _dotnet_datetimeoffset(moment - timedelta(hours=1)),
        "Next": _dotnet_datetimeoffset(moment + timedelta(hours=1)),
        "LastUpdated": _dotnet_datetimeoffset(moment),
    }
    return _json({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due})
