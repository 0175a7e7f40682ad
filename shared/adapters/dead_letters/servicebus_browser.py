"""Dead letters on Azure Service Bus: the process stage's sink, and the `cloudscale dlq` browser.

Two queues hold dead letters on Azure:

- the **poison queue** (`settings.poison_queue`): the Python Service Bus trigger cannot
  settle messages itself, so the process stage parks a message that can never succeed by
  sending a copy here (`ServiceBusDeadLetterSink`) and lets the host complete the original.
  The copy keeps the original message id, body and properties, plus the reason in the same
  application properties the broker uses for its own dead letters (`DeadLetterReason`,
  `DeadLetterErrorDescription`), so both kinds read alike.
- the events queue's **dead-letter sub-queue**: what the broker dead-lettered itself
  (`MaxDeliveryCountExceeded` after repeated transient failures, `TTLExpiredException`).

`ServiceBusDeadLetterBrowser` reads both. Listing and showing *peek* (no lock, no delivery
counted). Replaying *receives* in peek-lock, re-sends each selected message to the events
queue under a message id derived from the dead letter (see `replay_message`), and completes it
only once the send succeeded, so a failure at any point leaves the message where it was and
repeating a replay is harmless (duplicate detection, then the idempotent event store, drop
the second copy).

The SDK sits behind the small Protocols below so the tests fake the receivers while the
messages the adapter builds are real `azure.servicebus` ones (sent through the real
`ServiceBusPublisher`). Every SDK error becomes a `PortError`.
"""

from __future__ import annotations

import builtins
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Final, Protocol, TypeVar

from azure.core.exceptions import AzureError
from azure.servicebus import (
    ServiceBusReceivedMessage,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.aio import ServiceBusClient
from azure.servicebus.amqp import AmqpMessageBodyType

from shared.adapters.dead_letters.embedded import (
    DeadLetter,
    DeadLetterSource,
    ProgressCallback,
    ReplayProgress,
    ReplayResult,
)
from shared.adapters.event_queue.servicebus_publisher import create_service_bus_publisher, service_bus_client
from shared.domain.envelope import MAX_MESSAGE_ID_LENGTH, QueueMessage
from shared.ports import EventPublisher, PortError
from shared.settings import Settings, SettingsError

__all__ = [
    "DEAD_LETTER_DESCRIPTION_PROPERTY",
    "DEAD_LETTER_REASON_PROPERTY",
    "MAX_DESCRIPTION_CHARS",
    "ReceiverFactory",
    "ServiceBusDeadLetterBrowser",
    "ServiceBusDeadLetterSink",
    "ServiceBusReceiverLike",
    "create_service_bus_dead_letter_browser",
    "create_service_bus_dead_letter_sink",
    "parse_service_bus_id",
    "replay_message_id",
    "service_bus_receiver_factory",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEAD_LETTER_REASON_PROPERTY: Final = "DeadLetterReason"
DEAD_LETTER_DESCRIPTION_PROPERTY: Final = "DeadLetterErrorDescription"
"""The application properties Service Bus itself sets on dead letters; the sink sets the same."""
MAX_DESCRIPTION_CHARS: Final = 4096
"""Service Bus caps its own dead-letter descriptions at 4 KiB; the poison copy keeps to that."""

_REPLAY_NAMESPACE: Final = uuid.UUID("5b0c3f5e-8a4c-5d0e-9c1a-63a1f0d2e7b4")
"""A fixed namespace for `replay_message_id`'s name-based UUIDs (any fixed value serves)."""

_ID_PREFIX: Final[Mapping[DeadLetterSource, str]] = {"dead-letter": "dlq", "poison": "poison"}
_SOURCE_OF_PREFIX: Final = {prefix: source for source, prefix in _ID_PREFIX.items()}


class ServiceBusDeadLetterSink:
    """`DeadLetterSink` that parks a message in the Service Bus poison queue.

    `publisher` sends to the poison queue (`create_service_bus_dead_letter_sink` builds it).
    Parking the same delivery twice (the host crashed before completing the original) sends
    the same message id twice, which the poison queue's duplicate detection drops.
    """

    def __init__(self, publisher: EventPublisher, *, queue_name: str | None = None) -> None:
        """`queue_name` only names the queue in error messages."""
        self._publisher = publisher
        self._where = f"poison queue {queue_name!r}" if queue_name else "the poison queue"

    async def dead_letter(self, message: QueueMessage, reason: str, description: str) -> None:
        """Send `message` to the poison queue with the reason; return once the broker has it."""
        properties: dict[str, str | int] = {
            **message.application_properties,
            DEAD_LETTER_REASON_PROPERTY: reason,
            DEAD_LETTER_DESCRIPTION_PROPERTY: description[:MAX_DESCRIPTION_CHARS],
        }
        try:
            await self._publisher.publish([replace(message, application_properties=properties)])
        except PortError as exc:
            raise PortError(
                f"Parking message {message.message_id!r} ({reason}) in {self._where} failed: {exc}"
            ) from exc

    async def close(self) -> None:
        await self._publisher.close()


def create_service_bus_dead_letter_sink(settings: Settings) -> ServiceBusDeadLetterSink:
    """The sink on `settings.poison_queue`; connects lazily, on first use."""
    publisher = create_service_bus_publisher(settings, queue_name=settings.poison_queue)
    return ServiceBusDeadLetterSink(publisher, queue_name=settings.poison_queue)


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


class ServiceBusDeadLetterBrowser:
    """`DeadLetterBrowser` over the poison queue and the events queue's dead-letter sub-queue.

    Replaying specific ids has to receive the messages in front of them too (Service Bus
    cannot lock a message by sequence number). Those are held locked until the pass ends,
    then abandoned: abandoning at once would hand the same message straight back and loop.
    Each costs one delivery count; the dead-letter sub-queue ignores that, but the poison
    queue is an ordinary queue, so give it a high `maxDeliveryCount`.

    Duplicate detection cuts both ways: a replay sent while the original message id is still
    in the events queue's duplicate-detection window is accepted and then silently dropped by
    the broker, after the dead letter was completed. Keep that window short (minutes: it only
    has to cover a producer's retry), so it has passed by the time anyone replays.
    """

    def __init__(
        self,
        receivers: ReceiverFactory,
        publisher: EventPublisher,
        *,
        events_queue: str,
        poison_queue: str,
        receive_batch: int = 25,
        receive_wait_seconds: float = 5.0,
        peek_page: int = 100,
        timeout: float = 30.0,
    ) -> None:
        """`publisher` sends to the events queue. `receive_wait_seconds` is how long a receive waits
        for a message before the browser concludes there are no more; `timeout` bounds each peek."""
        self._make_receiver = receivers
        self._publisher = publisher
        self._events_queue = events_queue
        self._queue_names: dict[DeadLetterSource, str] = {
            "dead-letter": f"{events_queue}/$DeadLetterQueue",
            "poison": poison_queue,
        }
        self._receive_batch = receive_batch
        self._receive_wait = receive_wait_seconds
        self._peek_page = peek_page
        self._timeout = timeout
        self._resources = AsyncExitStack()
        self._receivers: dict[DeadLetterSource, ServiceBusReceiverLike] = {}

    async def list(self, limit: int) -> Sequence[DeadLetter]:
        """Up to `limit` dead letters from both queues, oldest first (by when they arrived where they are)."""
        found = [
            _dead_letter(source, message)
            for source in _ID_PREFIX
            for message in await self._peek(source, limit=limit, start=1)
        ]
        found.sort(key=_arrival)
        return found[:limit]

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        parsed = parse_service_bus_id(dead_letter_id)
        if parsed is None:
            return None
        source, sequence_number = parsed
        # Peeking from a sequence number returns the first message at or after it.
        page = await self._peek(source, limit=1, start=sequence_number)
        if page and page[0].sequence_number == sequence_number:
            return _dead_letter(source, page[0])
        return None

    async def replay(
        self, dead_letter_ids: Sequence[str] | None, on_progress: ProgressCallback | None = None
    ) -> ReplayResult:
        wanted, not_found = await self._targets(dead_letter_ids)
        total = sum(len(numbers) for numbers in wanted.values())
        replayed: list[DeadLetter] = []

        def done(dead_letter: DeadLetter) -> None:
            replayed.append(dead_letter)
            if on_progress is not None:
                on_progress(ReplayProgress(total=total, done=len(replayed), dead_letter=dead_letter))

        if on_progress is not None:
            on_progress(ReplayProgress(total=total, done=0))
        for source, numbers in wanted.items():
            if numbers:
                missing = await self._replay_from(source, numbers, done)
                not_found.extend(_format_id(source, number) for number in sorted(missing))
        return ReplayResult(replayed=tuple(replayed), not_found=tuple(not_found))

    async def close(self) -> None:
        """Close the receivers, their client and credential, then the events-queue publisher."""
        self._receivers.clear()
        try:
            try:
                await self._resources.aclose()
            finally:
                await self._publisher.close()
        except AzureError as exc:
            raise PortError(f"Closing the Service Bus dead-letter browser failed: {exc}") from exc

    async def _targets(
        self, dead_letter_ids: Sequence[str] | None
    ) -> tuple[dict[DeadLetterSource, set[int]], builtins.list[str]]:
        """The sequence numbers to replay per source, and the requested ids that are not there."""
        wanted: dict[DeadLetterSource, set[int]] = {source: set() for source in _ID_PREFIX}
        if dead_letter_ids is None:
            # "All" means what is there now, so the pass ends even if replayed messages come
            # back (the cause is not fixed yet): those wait for the next replay.
            for source in _ID_PREFIX:
                messages = await self._peek(source, limit=None, start=1)
                wanted[source] = {m.sequence_number for m in messages if m.sequence_number is not None}
            return wanted, []
        not_found: list[str] = []
        for dead_letter_id in dict.fromkeys(dead_letter_ids):
            # A peek per id first: replaying has to receive every message in front of the
            # ones wanted, and a mistyped id would otherwise cost a pass over the whole queue.
            found = await self.get(dead_letter_id)
            parsed = parse_service_bus_id(dead_letter_id)
            if found is None or parsed is None:
                not_found.append(dead_letter_id)
            else:
                wanted[parsed[0]].add(parsed[1])
        return wanted, not_found

    async def _replay_from(
        self, source: DeadLetterSource, numbers: set[int], done: Callable[[DeadLetter], None]
    ) -> set[int]:
        """Replay the messages with these sequence numbers from one source; return those not found."""
        receiver = self._receiver(source)
        remaining = set(numbers)
        held: list[ServiceBusReceivedMessage] = []  # locked by this pass and not settled yet
        seen: set[int | None] = set()
        try:
            while remaining:
                batch = await self._call(
                    source,
                    "receive from",
                    receiver.receive_messages(max_message_count=self._receive_batch, max_wait_time=self._receive_wait),
                )
                if not batch:
                    break  # nothing more to receive: the rest are gone (replayed meanwhile)
                held.extend(batch)
                new = [message for message in batch if message.sequence_number not in seen]
                if not new:
                    # Only messages this pass already holds came back: their locks expired
                    # before it got through the queue. Going on could loop; say so instead.
                    missing = ", ".join(_format_id(source, number) for number in sorted(remaining))
                    raise PortError(
                        f"The locks on {self._queue_names[source]!r} expired before the replay reached {missing}; "
                        "nothing was lost: replay those again (fewer at a time, or with a longer lockDuration)"
                    )
                for message in new:
                    seen.add(message.sequence_number)
                    if message.sequence_number in remaining:
                        done(await self._replay_one(source, receiver, message))
                        held = [other for other in held if other is not message]
                        remaining.discard(message.sequence_number)
        finally:
            await self._release(source, receiver, held)
        return remaining

    async def _replay_one(
        self, source: DeadLetterSource, receiver: ServiceBusReceiverLike, message: ServiceBusReceivedMessage
    ) -> DeadLetter:
        """Send first, complete second: a crash in between leaves a duplicate, never a loss."""
        dead_letter = _dead_letter(source, message)
        try:
            await self._publisher.publish([replay_message(dead_letter)])
        except PortError as exc:
            raise PortError(
                f"Replaying {dead_letter.id} (message id {dead_letter.message_id!r}) to queue "
                f"{self._events_queue!r} failed; it stays in {self._queue_names[source]!r}: {exc}"
            ) from exc
        try:
            await receiver.complete_message(message)
        except AzureError as exc:
            raise PortError(
                f"{dead_letter.id} (message id {dead_letter.message_id!r}) was replayed to {self._events_queue!r} "
                f"but could not be removed from {self._queue_names[source]!r}, so it will be listed again; "
                f"replaying it again is harmless (same replay message id): {type(exc).__name__}: {exc}"
            ) from exc
        return dead_letter

    async def _release(
        self, source: DeadLetterSource, receiver: ServiceBusReceiverLike, held: Sequence[ServiceBusReceivedMessage]
    ) -> None:
        """Abandon the messages received but not replayed, so they are visible again at once."""
        for message in held:
            try:
                await receiver.abandon_message(message)
            except AzureError as exc:
                # Its lock expires on its own; failing here would hide the replay's real outcome.
                logger.warning(
                    "could not abandon %s in %s (its lock will expire): %s",
                    _format_id(source, message.sequence_number or 0),
                    self._queue_names[source],
                    exc,
                )

    async def _peek(
        self, source: DeadLetterSource, *, limit: int | None, start: int
    ) -> builtins.list[ServiceBusReceivedMessage]:
        """Up to `limit` (None: all) messages from sequence number `start` on, page by page."""
        receiver = self._receiver(source)
        found: list[ServiceBusReceivedMessage] = []
        while limit is None or len(found) < limit:
            count = self._peek_page if limit is None else min(self._peek_page, limit - len(found))
            page = await self._call(
                source, "peek", receiver.peek_messages(count, sequence_number=start, timeout=self._timeout)
            )
            if not page:
                break
            found.extend(page)
            start = max(message.sequence_number or 0 for message in page) + 1
        return found

    def _receiver(self, source: DeadLetterSource) -> ServiceBusReceiverLike:
        if source not in self._receivers:
            try:
                receiver = self._make_receiver(self._resources, source)
            except (AzureError, ValueError) as exc:
                raise PortError(
                    f"Cannot create a Service Bus receiver for {self._queue_names[source]!r}: {exc}"
                ) from exc
            self._resources.push_async_callback(receiver.close)
            self._receivers[source] = receiver
        return self._receivers[source]

    async def _call(self, source: DeadLetterSource, action: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except AzureError as exc:
            raise PortError(
                f"Could not {action} Service Bus queue {self._queue_names[source]!r}: {type(exc).__name__}: {exc}"
            ) from exc


def parse_service_bus_id(dead_letter_id: str) -> tuple[DeadLetterSource, int] | None:
    """`"dlq-42"` -> `("dead-letter", 42)`; None if the id names no Service Bus dead letter."""
    prefix, _, number = dead_letter_id.strip().lower().rpartition("-")
    source = _SOURCE_OF_PREFIX.get(prefix)
    if source is None or not (number.isascii() and number.isdigit()):
        return None
    return source, int(number)


def replay_message(dead_letter: DeadLetter) -> QueueMessage:
    """The message a replay sends: the original, under a message id derived from the dead letter.

    Not the original id: the events queue already saw it, and while it is inside the queue's
    duplicate-detection window Service Bus would accept the resend and silently drop it (after
    the dead letter was completed: a loss). The derived id is fixed per dead letter, so a
    replay retried after a crash between send and complete is still dropped as a duplicate;
    and the event store is keyed on (tenantId, eventId) in the body, so the event is stored once.

    The id reads `<original id>:replay:<dead-letter id>`. Where that would pass Service Bus's
    `MAX_MESSAGE_ID_LENGTH` (a long tenant id, or a replay of a replay), the original id is
    replaced by a name-based UUID of it: still one fixed id per dead letter, still within the
    limit, and the original id stays readable in the `ReplayOf` property.
    """
    original = dead_letter.message
    return QueueMessage(
        message_id=replay_message_id(original.message_id, dead_letter.id),
        body=original.body,
        content_type=original.content_type,
        subject=original.subject,
        correlation_id=original.correlation_id,
        application_properties={**original.application_properties, "ReplayOf": original.message_id},
    )


def replay_message_id(message_id: str, dead_letter_id: str) -> str:
    """`<message id>:replay:<dead-letter id>`, within `MAX_MESSAGE_ID_LENGTH`; see `replay_message`."""
    suffix = f":replay:{dead_letter_id}"
    if len(message_id) + len(suffix) <= MAX_MESSAGE_ID_LENGTH:
        return message_id + suffix
    return f"{uuid.uuid5(_REPLAY_NAMESPACE, message_id)}{suffix}"


def _format_id(source: DeadLetterSource, sequence_number: int) -> str:
    return f"{_ID_PREFIX[source]}-{sequence_number}"


def _dead_letter(source: DeadLetterSource, message: ServiceBusReceivedMessage) -> DeadLetter:
    """Map a received message onto a `DeadLetter` (and the `QueueMessage` a replay sends)."""
    properties = _text_properties(message.application_properties)
    reason = properties.pop(DEAD_LETTER_REASON_PROPERTY, None)
    description = properties.pop(DEAD_LETTER_DESCRIPTION_PROPERTY, None)
    queue_message = QueueMessage(
        message_id=message.message_id or "",
        body=_body_bytes(message),
        content_type=message.content_type or "application/json",
        subject=message.subject,
        correlation_id=message.correlation_id,
        application_properties=properties,
    )
    poison = source == "poison"
    return DeadLetter(
        id=_format_id(source, message.sequence_number or 0),
        source=source,
        message=queue_message,
        reason=None if reason is None else str(reason),
        description=None if description is None else str(description),
        # A poison copy was enqueued when it was parked; its own delivery count only counts
        # this tool's receives, and the original's was not recorded.
        delivery_count=None if poison else message.delivery_count,
        enqueued_at=None if poison else message.enqueued_time_utc,
        dead_lettered_at=message.enqueued_time_utc if poison else None,
    )


def _text_properties(raw: Mapping[str | bytes, object] | None) -> dict[str, str | int]:
    """Received application properties come back with bytes keys and bytes string values."""
    properties: dict[str, str | int] = {}
    for key, value in (raw or {}).items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if isinstance(value, bytes):
            properties[name] = value.decode("utf-8", "replace")
        elif isinstance(value, str | int):
            properties[name] = value
        else:  # float, UUID, AMQP timestamp: not types this pipeline sends; kept as text
            properties[name] = str(value)
    return properties


def _body_bytes(message: ServiceBusReceivedMessage) -> bytes:
    """The body as bytes. This pipeline only sends data bodies; anything else is shown as text."""
    body = message.body
    if message.body_type == AmqpMessageBodyType.DATA:
        return body if isinstance(body, bytes) else b"".join(body)
    if isinstance(body, bytes):
        return body
    return str(body).encode()


def _arrival(dead_letter: DeadLetter) -> float:
    moment = dead_letter.dead_lettered_at or dead_letter.enqueued_at
    return moment.timestamp() if moment is not None else 0.0


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


def create_service_bus_dead_letter_browser(settings: Settings) -> ServiceBusDeadLetterBrowser:
    """The browser over `settings.poison_queue` and `settings.events_queue`'s dead-letter sub-queue.

    Connects lazily. Needs *Azure Service Bus Data Receiver* on both queues and *Data Sender*
    on the events queue.
    """
    return ServiceBusDeadLetterBrowser(
        service_bus_receiver_factory(settings),
        create_service_bus_publisher(settings),
        events_queue=settings.events_queue,
        poison_queue=settings.poison_queue,
    )
