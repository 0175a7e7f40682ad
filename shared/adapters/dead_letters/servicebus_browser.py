"""`DeadLetterBrowser` on Azure Service Bus: the `cloudscale dlq` backend.

Two queues hold dead letters on Azure: the **poison queue** (`settings.poison_queue`), where
the process stage parks messages (`servicebus_sink`), and the events queue's **dead-letter
sub-queue**, what the broker dead-lettered itself (`MaxDeliveryCountExceeded` after repeated
transient failures, `TTLExpiredException`; see `shared.domain.dead_letter_reasons`).

`ServiceBusDeadLetterBrowser` reads both. Listing and showing *peek* (no lock, no delivery
counted). Replaying *receives* in peek-lock, re-sends each selected message to the events
queue under a message id derived from the dead letter (see `servicebus_messages.replay_message`),
and completes it only once the send succeeded, so a failure at any point leaves the message
where it was and repeating a replay is harmless (duplicate detection, then the idempotent
event store, drop the second copy).
Removing (an erased person's messages) receives the same way and completes the selected
messages without sending them anywhere.

The SDK sits behind `servicebus_receivers` so the tests fake the receivers while the messages
the adapter builds are real `azure.servicebus` ones (sent through the real
`ServiceBusPublisher`). Every SDK error becomes a `PortError`.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Final, Literal, TypeVar

from azure.core.exceptions import AzureError
from azure.servicebus import ServiceBusReceivedMessage

from shared.adapters.dead_letters.servicebus_messages import (
    SOURCES,
    format_id,
    parse_service_bus_id,
    replay_message,
    to_dead_letter,
)
from shared.adapters.dead_letters.servicebus_receivers import (
    ReceiverFactory,
    ServiceBusReceiverLike,
    service_bus_receiver_factory,
)
from shared.adapters.event_queue.servicebus_publisher import create_service_bus_publisher
from shared.ports import (
    DeadLetter,
    DeadLetterSource,
    EventPublisher,
    PortError,
    ProgressCallback,
    ReplayProgress,
    ReplayResult,
)
from shared.settings import Settings

__all__ = ["ServiceBusDeadLetterBrowser", "create_service_bus_dead_letter_browser"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_Pass = Literal["replay", "removal"]
_AGAIN: Final[dict[_Pass, str]] = {"replay": "replay", "removal": "remove"}


class ServiceBusDeadLetterBrowser:
    """`DeadLetterBrowser` over the poison queue and the events queue's dead-letter sub-queue.

    Replaying or removing specific ids has to receive the messages in front of them too (Service Bus
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
            to_dead_letter(source, message)
            for source in SOURCES
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
            return to_dead_letter(source, page[0])
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

        async def replay_one(
            source: DeadLetterSource, receiver: ServiceBusReceiverLike, message: ServiceBusReceivedMessage
        ) -> None:
            done(await self._replay_one(source, receiver, message))

        for source, numbers in wanted.items():
            if numbers:
                missing = await self._settle_from(source, numbers, replay_one, purpose="replay")
                not_found.extend(format_id(source, number) for number in sorted(missing))
        return ReplayResult(replayed=tuple(replayed), not_found=tuple(not_found))

    async def remove(self, dead_letter_ids: Sequence[str]) -> int:
        """Complete these dead letters without sending them anywhere; return how many were removed.

        Receives like a replay (the messages in front are held, then abandoned), so it costs the
        same: one delivery count on each message passed on the way.
        """
        wanted, _ = await self._targets(dead_letter_ids)
        removed = 0
        for source, numbers in wanted.items():
            if numbers:
                missing = await self._settle_from(source, numbers, self._remove_one, purpose="removal")
                removed += len(numbers) - len(missing)
        return removed

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
        wanted: dict[DeadLetterSource, set[int]] = {source: set() for source in SOURCES}
        if dead_letter_ids is None:
            # "All" means what is there now, so the pass ends even if replayed messages come
            # back (the cause is not fixed yet): those wait for the next replay.
            for source in SOURCES:
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

    async def _settle_from(
        self,
        source: DeadLetterSource,
        numbers: set[int],
        settle: Callable[[DeadLetterSource, ServiceBusReceiverLike, ServiceBusReceivedMessage], Awaitable[None]],
        *,
        purpose: _Pass,
    ) -> set[int]:
        """Receive from one source until each of these sequence numbers was handed to `settle`
        (which completes it); abandon the others received on the way. Returns those not found.

        Bounded: the pass ends when a receive comes back empty, when it only returns messages
        past the last one wanted (a queue that is not partitioned, as ours are not, hands out
        messages in sequence order, so the rest went meanwhile; new arrivals cannot keep the pass
        going), or when only messages it already holds come back (their locks expired: a `PortError`).
        """
        receiver = self._receiver(source)
        remaining = set(numbers)
        last_wanted = max(numbers)
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
                    break  # nothing more to receive: the rest are gone (replayed or removed meanwhile)
                held.extend(batch)
                new = [message for message in batch if message.sequence_number not in seen]
                if not new:
                    # Only messages this pass already holds came back: their locks expired
                    # before it got through the queue. Going on could loop; say so instead.
                    missing = ", ".join(format_id(source, number) for number in sorted(remaining))
                    raise PortError(
                        f"The locks on {self._queue_names[source]!r} expired before the {purpose} reached {missing}; "
                        f"nothing was lost: {_AGAIN[purpose]} those again "
                        "(fewer at a time, or with a longer lockDuration)"
                    )
                for message in new:
                    seen.add(message.sequence_number)
                    if message.sequence_number in remaining:
                        await settle(source, receiver, message)
                        held = [other for other in held if other is not message]
                        remaining.discard(message.sequence_number)
                if all((message.sequence_number or 0) > last_wanted for message in new):
                    break  # past every message wanted: the rest are gone
        finally:
            await self._release(source, receiver, held)
        return remaining

    async def _replay_one(
        self, source: DeadLetterSource, receiver: ServiceBusReceiverLike, message: ServiceBusReceivedMessage
    ) -> DeadLetter:
        """Send first, complete second: a crash in between leaves a duplicate, never a loss."""
        dead_letter = to_dead_letter(source, message)
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

    async def _remove_one(
        self, source: DeadLetterSource, receiver: ServiceBusReceiverLike, message: ServiceBusReceivedMessage
    ) -> None:
        """Complete without sending: the message is gone for good."""
        try:
            await receiver.complete_message(message)
        except AzureError as exc:
            raise PortError(
                f"Could not remove {format_id(source, message.sequence_number or 0)} from "
                f"{self._queue_names[source]!r}; it is still there, remove it again: {type(exc).__name__}: {exc}"
            ) from exc

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
                    format_id(source, message.sequence_number or 0),
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


def _arrival(dead_letter: DeadLetter) -> float:
    moment = dead_letter.dead_lettered_at or dead_letter.enqueued_at
    return moment.timestamp() if moment is not None else 0.0


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
