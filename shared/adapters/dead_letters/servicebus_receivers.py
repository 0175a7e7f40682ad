"""The Service Bus receivers the dead-letter browser reads through, behind a small Protocol.

The browser only sees `ServiceBusReceiverLike` and a `ReceiverFactory`, so the tests fake the
receivers at the SDK's lowest boundary while the messages stay real `azure.servicebus` ones.
`service_bus_receiver_factory` builds the real ones (one client and credential for both queues).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Protocol

from azure.servicebus import ServiceBusReceivedMessage, ServiceBusReceiveMode, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from shared.adapters.event_queue.servicebus_publisher import service_bus_client
from shared.ports import DeadLetterSource
from shared.settings import Settings, SettingsError

__all__ = ["ReceiverFactory", "ServiceBusReceiverLike", "service_bus_receiver_factory"]


class ServiceBusReceiverLike(Protocol):
    """The calls the browser makes on `azure.servicebus.aio.ServiceBusReceiver` (peek-lock mode), and no more."""

    # `timeout` is the SDK's own bound on the call including its retries (see the publisher).
    async def peek_messages(
        self,
        max_message_count: int = 1,
        *,
        sequence_number: int = 0,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[ServiceBusReceivedMessage]:
        """Up to `max_message_count` messages from `sequence_number` on, neither locked nor counted."""
        ...

    async def receive_messages(
        self, max_message_count: int | None = 1, max_wait_time: float | None = None
    ) -> list[ServiceBusReceivedMessage]:
        """Lock and return up to `max_message_count` messages; an empty list after `max_wait_time` seconds."""
        ...

    async def complete_message(self, message: ServiceBusReceivedMessage) -> None: ...

    async def abandon_message(self, message: ServiceBusReceivedMessage) -> None: ...

    async def close(self) -> None: ...


ReceiverFactory = Callable[[AsyncExitStack, DeadLetterSource], ServiceBusReceiverLike]
"""Builds the receiver for one source (without connecting), pushing onto the stack how to close
whatever it created besides the receiver (client, credential). The browser closes receivers."""


class _ClientReceivers:
    """The real `ReceiverFactory`: one client (and credential) for both receivers, built on first use."""

    def __init__(self, settings: Settings, *, try_timeout: float, retry_total: int) -> None:
        self._settings = settings
        self._try_timeout = try_timeout
        self._retry_total = retry_total
        self._client: ServiceBusClient | None = None

    def __call__(self, resources: AsyncExitStack, source: DeadLetterSource) -> ServiceBusReceiverLike:
        client = self._client or self._build_client(resources)
        # Prefetch stays 0: prefetched messages are locked (and their delivery counted) before
        # the browser ever sees them.
        if source == "dead-letter":
            return client.get_queue_receiver(
                self._settings.events_queue,
                sub_queue=ServiceBusSubQueue.DEAD_LETTER,
                receive_mode=ServiceBusReceiveMode.PEEK_LOCK,
                prefetch_count=0,
            )
        return client.get_queue_receiver(
            self._settings.poison_queue, receive_mode=ServiceBusReceiveMode.PEEK_LOCK, prefetch_count=0
        )

    def _build_client(self, resources: AsyncExitStack) -> ServiceBusClient:
        client = service_bus_client(
            self._settings, resources, retry_total=self._retry_total, try_timeout=self._try_timeout
        )
        self._client = client
        return client


def service_bus_receiver_factory(
    settings: Settings, *, try_timeout: float = 10.0, retry_total: int = 3
) -> ReceiverFactory:
    """The factory building real receivers from `settings` (namespace with `DefaultAzureCredential`
    preferred over a connection string, like the publisher)."""
    if not (settings.service_bus_namespace or settings.service_bus_connection_string):
        raise SettingsError(
            "ServiceBusConnection__fullyQualifiedNamespace (or ServiceBusConnection) is required "
            "to read the Service Bus dead-letter queues"
        )
    return _ClientReceivers(settings, try_timeout=try_timeout, retry_total=retry_total)
