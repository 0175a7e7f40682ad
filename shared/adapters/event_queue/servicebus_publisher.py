"""Azure Service Bus adapter for the `EventPublisher` port.

One `ServiceBusClient` and one queue sender per process, created on first use and reused:
opening an AMQP connection and link costs a TLS handshake, a token exchange and a link
attach, far too much to pay per request. Nothing touches the network at construction time,
so building the publisher at import time (as Azure Functions does) cannot fail on a slow
or unreachable broker.

The SDK documents that senders are not coroutine-safe ("use an `asyncio.Lock()`"), and
sharing one across coroutines has had real races (the link being torn down under a
concurrent open), so every use of the sender runs under one lock. Concurrent publishes
therefore go one after another; each is a single round trip per batch.

Every `azure.servicebus` / `azure.core` error is translated to `PublishError` here, so
callers never see an SDK exception.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Protocol

from azure.core.exceptions import AzureError
from azure.identity.aio import DefaultAzureCredential
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.exceptions import MessageSizeExceededError

from shared.domain.envelope import QueueMessage
from shared.ports import PublishError
from shared.settings import Settings, SettingsError

__all__ = [
    "SenderFactory",
    "ServiceBusPublisher",
    "ServiceBusSenderLike",
    "create_service_bus_publisher",
    "service_bus_client",
    "service_bus_sender_factory",
]

# The SDK's `PrimitiveTypes` (application property values), which it does not export.
_AmqpPrimitive = int | float | bytes | bool | str | uuid.UUID


class ServiceBusSenderLike(Protocol):
    """The calls the publisher makes on `azure.servicebus.aio.ServiceBusSender`, and no more."""

    async def __aenter__(self) -> object:
        """Open the AMQP link if it is not open (what `async with sender:` does)."""
        ...

    async def create_message_batch(self) -> ServiceBusMessageBatch:
        """Return an empty batch sized to the link's limit (opens the link the first time)."""
        ...

    # The SDK's own `timeout` bounds the send including its retries, which an outer
    # cancellation could not do cleanly, hence the parameter ASYNC109 warns about.
    async def send_messages(
        self,
        message: ServiceBusMessageBatch,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Send one batch; return once the broker has acknowledged it (within `timeout` seconds)."""
        ...

    async def close(self) -> None:
        """Close the link and its connection."""
        ...


SenderFactory = Callable[[AsyncExitStack], ServiceBusSenderLike]
"""Builds the sender (without connecting) and pushes onto the stack how to close whatever it
created besides the sender (client, credential). The publisher closes the sender itself."""


class ServiceBusPublisher:
    """`EventPublisher` on an Azure Service Bus queue.

    A publish that fails part-way leaves the batches already sent on the queue and raises
    `PublishError`. That is safe by design: each message's `message_id` is its `<tenantId>/<eventId>`, so the
    queue's duplicate detection (`requiresDuplicateDetection`, within its time window) drops a
    resend of the same event, and the process stage is idempotent besides. The caller answers
    503, the producer resends the whole request, and no event is lost or counted twice.
    """

    def __init__(
        self,
        sender_factory: SenderFactory,
        *,
        queue_name: str,
        send_timeout: float | None = 15.0,
        check_timeout: float = 10.0,
        failure_memory: float = 30.0,
    ) -> None:
        """Store how to build the sender; nothing connects until the first call.

        `send_timeout` bounds each batch send including the SDK's own retries; `check_timeout`
        bounds `check()`, whose link open the SDK would otherwise retry with backoff.
        `failure_memory` is how long a failed publish keeps `check()` failing unless a later
        publish succeeds.
        """
        self._sender_factory = sender_factory
        self._queue_name = queue_name
        self._send_timeout = send_timeout
        self._check_timeout = check_timeout
        # One lock for creating and for using the sender: the SDK sender is not coroutine-safe.
        self._lock = asyncio.Lock()
        self._resources = AsyncExitStack()
        self._sender: ServiceBusSenderLike | None = None
        self._closed = False
        self._failure_memory = failure_memory
        # When the most recent publish failed (monotonic seconds); None once one succeeds.
        self._last_failure: float | None = None

    async def publish(self, messages: Sequence[QueueMessage]) -> None:
        """Send `messages` in as few batches as fit; return once every batch was acknowledged.

        Raises `PublishError` if a message cannot fit in an empty batch (then nothing was sent)
        or the broker fails. Batches sent before a broker failure stay sent (see the class
        docstring for why that is safe).
        """
        if not messages:
            return
        sent_batches = sent_messages = 0
        async with self._lock:
            sender = self._ensure_sender()
            try:
                # Pack every batch before sending any, so a message that can never fit fails
                # the call with nothing on the queue. After the first link open,
                # `create_message_batch` is local (the SDK caches the link's size limit).
                batches = await self._pack(sender, messages)
                for batch in batches:
                    await sender.send_messages(batch, timeout=self._send_timeout)
                    sent_batches += 1
                    sent_messages += len(batch)
                self._last_failure = None
            except AzureError as exc:
                self._last_failure = time.monotonic()
                raise PublishError(
                    f"Sending to Service Bus queue {self._queue_name!r} failed after {sent_batches} batch(es) "
                    f"({sent_messages} of {len(messages)} messages) were sent; resending all is safe "
                    f"(duplicate detection on message id): {type(exc).__name__}: {exc}"
                ) from exc

    async def _pack(
        self, sender: ServiceBusSenderLike, messages: Sequence[QueueMessage]
    ) -> list[ServiceBusMessageBatch]:
        """Fill batches in order, starting a new one whenever the current one is full."""
        batches = [await sender.create_message_batch()]
        for queue_message in messages:
            message = _to_service_bus_message(queue_message)
            if _try_add(batches[-1], message):
                continue
            if len(batches[-1]):
                batches.append(await sender.create_message_batch())
                if _try_add(batches[-1], message):
                    continue
            raise PublishError(
                f"Message {queue_message.message_id} ({len(queue_message.body)} body bytes) is larger than "
                f"the largest batch queue {self._queue_name!r} accepts ({batches[-1].max_size_in_bytes} bytes); "
                "it can never be sent, so nothing was sent"
            )
        return batches

    async def check(self) -> None:
        """Raise `PublishError` unless a sender link to the queue is open or can be opened now.

        Opening a sender link proves DNS, TLS, the credential, the *Send* right (the Azure
        Service Bus Data Sender role is enough; nothing is sent, peeked or managed) and that
        the queue exists. While the link is already open this costs no round trip; a link an
        earlier error tore down is reopened here.

        An open link does not prove sends succeed (a queue that is full or over its quota
        refuses them; a send right may be withdrawn). Sending a probe message would put
        messages on the events queue, so the check also uses passive evidence: a publish
        that failed within the last `failure_memory` seconds, with no success since, fails it.
        """
        failed_at = self._last_failure
        if failed_at is not None and (ago := time.monotonic() - failed_at) < self._failure_memory:
            raise PublishError(
                f"Service Bus queue {self._queue_name!r}: the most recent publish failed {ago:.0f} s ago "
                "and none has succeeded since"
            )
        async with self._lock:
            sender = self._ensure_sender()
            try:
                # `__aenter__` is the SDK's public way to open a sender. Unlike
                # `create_message_batch`, which only opens the link the first time, it reopens a
                # link an error closed. Its own retries back off for tens of seconds, too long
                # for a readiness probe, hence the outer timeout.
                async with asyncio.timeout(self._check_timeout):
                    await sender.__aenter__()
            except TimeoutError as exc:
                raise PublishError(
                    f"Service Bus queue {self._queue_name!r}: no sender link within {self._check_timeout:g} s"
                ) from exc
            except AzureError as exc:
                raise PublishError(
                    f"Service Bus queue {self._queue_name!r} is not reachable for sending: {type(exc).__name__}: {exc}"
                ) from exc

    async def close(self) -> None:
        """Close the sender, then the client and credential. Safe to call more than once."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            self._sender = None
            try:
                # The exit stack runs every close even if an earlier one raises.
                await self._resources.aclose()
            except AzureError as exc:
                raise PublishError(f"Closing the Service Bus sender failed: {type(exc).__name__}: {exc}") from exc

    def _ensure_sender(self) -> ServiceBusSenderLike:
        """Return the process's sender, building it on first use. Call with the lock held."""
        if self._closed:
            raise PublishError("The Service Bus publisher is closed")
        if self._sender is None:
            try:
                sender = self._sender_factory(self._resources)
            except (AzureError, ValueError) as exc:
                # ValueError: the SDK rejects e.g. a connection string whose EntityPath names
                # another queue. Building the sender does no I/O, so this is configuration.
                raise PublishError(f"Cannot create a Service Bus sender for queue {self._queue_name!r}: {exc}") from exc
            self._resources.push_async_callback(sender.close)
            self._sender = sender
        return self._sender


def _to_service_bus_message(message: QueueMessage) -> ServiceBusMessage:
    """Map the broker-neutral message onto the SDK message; `message_id` drives duplicate detection."""
    properties: dict[str | bytes, _AmqpPrimitive] = dict(message.application_properties.items())
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id,
        content_type=message.content_type,
        subject=message.subject,
        correlation_id=message.correlation_id,
        application_properties=properties,
    )


def _try_add(batch: ServiceBusMessageBatch, message: ServiceBusMessage) -> bool:
    """Add `message` to `batch`; False if it does not fit (the batch is left unchanged)."""
    try:
        batch.add_message(message)
    except MessageSizeExceededError:
        return False
    return True


def service_bus_sender_factory(
    settings: Settings, *, queue_name: str | None = None, try_timeout: float = 5.0, retry_total: int = 3
) -> SenderFactory:
    """Return a factory building the real client and a sender for `queue_name` (default: the events queue).

    The identity-based namespace (`DefaultAzureCredential`: the managed identity in Azure) is
    preferred over a connection string. `try_timeout` bounds each SDK attempt, including the
    link open, which the SDK otherwise leaves unbounded.
    """
    if not (settings.service_bus_namespace or settings.service_bus_connection_string):
        # Checked now, not on first use: a misconfigured app should fail at startup.
        raise SettingsError(
            "ServiceBusConnection__fullyQualifiedNamespace (or ServiceBusConnection) is required "
            "for the Service Bus publisher"
        )

    def build(resources: AsyncExitStack) -> ServiceBusSenderLike:
        client = service_bus_client(settings, resources, retry_total=retry_total, try_timeout=try_timeout)
        return client.get_queue_sender(queue_name or settings.events_queue)

    return build


def service_bus_client(
    settings: Settings, resources: AsyncExitStack, *, retry_total: int, try_timeout: float
) -> ServiceBusClient:
    """A client for `settings`' namespace (`DefaultAzureCredential`, preferred) or connection
    string; it and its credential are closed with `resources`."""
    if settings.service_bus_namespace:
        credential = DefaultAzureCredential()
        resources.push_async_callback(credential.close)
        client = ServiceBusClient(
            fully_qualified_namespace=settings.service_bus_namespace,
            credential=credential,
            retry_total=retry_total,
            try_timeout=try_timeout,
        )
    elif settings.service_bus_connection_string:
        client = ServiceBusClient.from_connection_string(
            settings.service_bus_connection_string, retry_total=retry_total, try_timeout=try_timeout
        )
    else:
        raise SettingsError(
            "ServiceBusConnection__fullyQualifiedNamespace (or ServiceBusConnection) is required for Service Bus"
        )
    resources.push_async_callback(client.close)
    return client


def create_service_bus_publisher(settings: Settings, *, queue_name: str | None = None) -> ServiceBusPublisher:
    """Build the publisher for `queue_name` (default `settings.events_queue`); connects lazily, on first use."""
    queue = queue_name or settings.events_queue
    return ServiceBusPublisher(service_bus_sender_factory(settings, queue_name=queue), queue_name=queue)
