"""Drives a Service Bus-triggered function from the embedded queue, with the host's semantics.

What the Functions host does for a Service Bus trigger, on one machine:

- receive in peek-lock, only as many messages as the free invocation slots take (so a
  message is never locked while it waits for a slot: `prefetchCount` 0): one message per
  invocation with cardinality one, up to `maxMessageBatchSize` with cardinality many;
- invoke the function with its message or batch; renew the locks while the function runs,
  every half lock duration, up to `maxAutoLockRenewalDuration`;
- the function returned: complete its messages (`autoCompleteMessages`); it raised: abandon
  them, so they are delivered again; the queue dead-letters a message once
  `maxDeliveryCount` deliveries are used up;
- the number of concurrent invocations follows host.json (see `local_host.concurrency`).

Stopping lets invocations in flight finish for a grace period; any still running after it
keep their messages locked until the lock expires, so they are delivered again after a
restart: nothing is lost, and the idempotent store makes the second delivery harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from azure.functions.servicebus import ServiceBusMessage as FunctionsServiceBusMessage

from local_host.concurrency import DynamicConcurrency, tiered_concurrency
from local_host.functions import ServiceBusFunction
from local_host.host_config import HostConfig
from local_host.invocation import service_bus_invocation
from shared.adapters.embedded_queue import EmbeddedQueue, ReceivedMessage

__all__ = ["ServiceBusTrigger", "TriggerStats", "to_function_message"]

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0
"""How often an idle loop looks for messages it was not told about (other processes, expired locks)."""
ADJUST_SECONDS = 0.5
"""How often the concurrency limit is recomputed (queue depth, or dynamic adjustment)."""


@dataclass(slots=True)
class TriggerStats:
    passes: int = 0
    """Turns of the receive loop (each either receives, or waits)."""
    invocations: int = 0
    failures: int = 0
    completed: int = 0
    abandoned: int = 0
    limit: int = 1


class ServiceBusTrigger:
    """One trigger loop: one function fed from one embedded queue."""

    def __init__(self, function: ServiceBusFunction, queue: EmbeddedQueue, config: HostConfig) -> None:
        """Nothing runs until `start`."""
        self.function = function
        self.stats = TriggerStats()
        self._queue = queue
        self._options = config.service_bus
        self._dynamic = (
            DynamicConcurrency(cap=self._options.max_concurrent_calls) if config.dynamic_concurrency else None
        )
        self.stats.limit = (
            self._dynamic.limit if self._dynamic else tiered_concurrency(0, self._options.max_concurrent_calls)
        )
        self._wakeup = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._saturated = False
        self._failures_since_adjust = 0
        queue.on_arrival(self._wakeup.set)

    def start(self) -> None:
        """Start receiving (call from the event loop the host runs in)."""
        self._task = asyncio.create_task(self._run(), name=f"servicebus-trigger-{self.function.name}")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop receiving, give invocations in flight `grace_seconds` to finish, then cancel them."""
        self._stopping = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=grace_seconds)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning(
                    "%d invocation(s) cut short at shutdown; their messages will be redelivered", len(pending)
                )
                await asyncio.wait(pending)

    async def _run(self) -> None:
        next_adjust = 0.0
        while not self._stopping:
            self.stats.passes += 1
            now = time.monotonic()
            if now >= next_adjust:
                await self._adjust()
                next_adjust = now + ADJUST_SECONDS
            free = self.stats.limit - len(self._in_flight)
            if free <= 0:
                self._saturated = True
                # Clear first, so an arrival that set the event earlier does not turn this
                # wait into a busy loop; a slot freed from here on sets it again.
                self._wakeup.clear()
                await self._sleep(ADJUST_SECONDS)
                continue
            self._wakeup.clear()
            per_invocation = self._options.max_message_batch_size if self.function.many else 1
            try:
                received = await self._queue.receive(free * per_invocation)
            except (sqlite3.Error, OSError):
                logger.exception("receiving from the embedded queue failed; retrying in %s s", IDLE_POLL_SECONDS)
                await self._sleep(IDLE_POLL_SECONDS)
                continue
            if len(received) == free * per_invocation:
                self._saturated = True
            if not received:
                await self._sleep(IDLE_POLL_SECONDS)
            for start in range(0, len(received), per_invocation):
                task = asyncio.create_task(self._invoke(received[start : start + per_invocation]))
                self._in_flight.add(task)
                task.add_done_callback(self._finished)

    async def _adjust(self) -> None:
        if self._dynamic is not None:
            self.stats.limit = self._dynamic.adjust(saturated=self._saturated, failures=self._failures_since_adjust)
        else:
            try:
                depth = await self._queue.depth()
            except (sqlite3.Error, OSError):
                return
            self.stats.limit = tiered_concurrency(depth, self._options.max_concurrent_calls)
        self._saturated = False
        self._failures_since_adjust = 0

    async def _invoke(self, batch: list[ReceivedMessage]) -> None:
        self.stats.invocations += 1
        renewal = asyncio.create_task(self._renew_locks(batch))
        succeeded = False
        try:
            # The host's processing span: the function gets it as its context's trace context.
            with service_bus_invocation(
                self.function.name, [received.message for received in batch], many=self.function.many
            ) as context:
                await self.function.invoke([to_function_message(received) for received in batch], context)
            succeeded = True
        except Exception:
            self.stats.failures += 1
            self._failures_since_adjust += 1
            logger.exception(
                "function %s failed on %s; abandoning %s",
                self.function.name,
                _describe(batch),
                "it" if len(batch) == 1 else "them",
            )
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
        await self._settle(batch, succeeded)

    async def _settle(self, batch: list[ReceivedMessage], succeeded: bool) -> None:
        tokens = [received.lock_token for received in batch]
        try:
            if succeeded and self._options.auto_complete_messages:
                lost = await self._queue.complete_many(tokens)
                self.stats.completed += len(batch) - len(lost)
            elif not succeeded:
                lost = await self._queue.abandon_many(tokens)
                self.stats.abandoned += len(batch) - len(lost)
            else:
                return
        except (sqlite3.Error, OSError):
            logger.exception("settling %s failed; delivered again after the lock expires", _describe(batch))
            return
        if lost:
            lost_tokens = set(lost)
            logger.warning(
                "the lock on %d message(s) (%s) was lost before they were settled; they will be delivered again",
                len(lost),
                _describe([received for received in batch if received.lock_token in lost_tokens]),
            )

    async def _renew_locks(self, batch: list[ReceivedMessage]) -> None:
        deadline = time.monotonic() + self._options.max_auto_lock_renewal_seconds
        interval = self._queue.lock_seconds / 2
        held = [received.lock_token for received in batch]
        while held and time.monotonic() + interval < deadline:
            await asyncio.sleep(interval)
            try:
                lost = set(await self._queue.renew_locks(held))
            except (sqlite3.Error, OSError):
                logger.warning("renewing the locks of %s failed; trying again", _describe(batch))
                continue
            if lost:
                logger.warning("lost the lock on %d message(s) while they were processed", len(lost))
                held = [token for token in held if token not in lost]

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wakeup.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)


def _describe(batch: list[ReceivedMessage]) -> str:
    first = batch[0]
    if len(batch) == 1:
        return f"message {first.message.message_id} (delivery {first.delivery_count})"
    return f"a batch of {len(batch)} messages from {first.message.message_id}"


def to_function_message(received: ReceivedMessage) -> FunctionsServiceBusMessage:
    """The `func.ServiceBusMessage` the Python worker would build for this delivery."""
    message = received.message
    properties: dict[str, object] = dict(message.application_properties)
    return FunctionsServiceBusMessage(
        body=message.body,
        message_id=message.message_id,
        content_type=message.content_type,
        correlation_id=message.correlation_id,
        subject=message.subject,
        label=message.subject,
        delivery_count=received.delivery_count,
        enqueued_time_utc=datetime.fromtimestamp(received.enqueued_at, UTC),
        enqueued_sequence_number=received.sequence_number,
        sequence_number=received.sequence_number,
        lock_token=received.lock_token,
        locked_until=datetime.fromtimestamp(received.locked_until, UTC),
        application_properties=dict(properties),
        user_properties=properties,
    )
