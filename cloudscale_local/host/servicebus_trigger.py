"""Drives a Service Bus-triggered function from the embedded queue, with the host's semantics.

What the Functions host's Service Bus extension does, on one machine (sources in
`docs/architecture.md`, "The Service Bus trigger"):

- **cardinality many** (a batch per invocation): one receive loop per function per
  instance, one batch at a time: receive up to `maxMessageBatchSize` in peek-lock, invoke,
  settle, receive again. Dynamic concurrency and `maxConcurrentCalls` do not apply, and the
  locks are **not renewed** (`maxAutoLockRenewalDuration` belongs to the single-dispatch
  processor): an invocation must settle within the queue's lock duration.
- **cardinality one** (single dispatch): up to `maxConcurrentCalls` invocations at once, or
  the host's dynamic concurrency level when `concurrency.dynamicConcurrencyEnabled` is on
  (see `cloudscale_local.host.concurrency`); each message's lock is renewed while its invocation runs,
  every half lock duration, up to `maxAutoLockRenewalDuration`. Only as many messages are
  received as free slots take (`prefetchCount` 0), so none waits locked for a slot.
- either way: the function returned, its messages are completed (`autoCompleteMessages`);
  it raised or ran past `functionTimeout`, they are abandoned whatever `autoCompleteMessages`
  says, so they are delivered again; the queue dead-letters a message once
  `maxDeliveryCount` deliveries are used up.

Stopping lets invocations in flight finish for a grace period; those still running after it
are cancelled and their messages abandoned, as the extension abandons the messages of a
failed invocation. Messages of a host that was killed stay locked until their lock expires,
then are delivered again: nothing is lost, and the idempotent store makes the second
delivery harmless.
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

from cloudscale_local.host.concurrency import CpuThrottle, HostConcurrency
from cloudscale_local.host.functions import ServiceBusFunction
from cloudscale_local.host.host_config import HostConfig
from cloudscale_local.host.invocation import service_bus_invocation
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue, LockedMessage

__all__ = ["ServiceBusTrigger", "TriggerStats", "to_function_message"]

logger = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 1.0
"""How often an idle loop looks for messages it was not told about (other processes, expired locks)."""
ADJUST_SECONDS = 0.5
"""How often a saturated single-dispatch loop looks at its concurrency level again."""


@dataclass(slots=True)
class TriggerStats:
    passes: int = 0
    """Turns of the receive loop (each either receives, or waits)."""
    invocations: int = 0
    failures: int = 0
    completed: int = 0
    abandoned: int = 0
    limit: int = 1
    """Invocations allowed at once (always 1 for cardinality many)."""
    peak: int = 0
    """Most invocations seen running at once."""


class ServiceBusTrigger:
    """One trigger loop: one function fed from one embedded queue."""

    def __init__(self, function: ServiceBusFunction, queue: EmbeddedQueue, config: HostConfig) -> None:
        """Nothing runs until `start`."""
        self.function = function
        self.stats = TriggerStats()
        self._queue = queue
        self._options = config.service_bus
        self._timeout = config.function_timeout_seconds
        self._dynamic: HostConcurrency | None = None
        self._throttle: CpuThrottle | None = None
        if function.many:
            self.stats.limit = 1
        elif config.dynamic_concurrency:
            self._dynamic = HostConcurrency(maximum=config.concurrency.maximum_function_concurrency)
            self._throttle = CpuThrottle(threshold=config.concurrency.cpu_threshold)
            self.stats.limit = self._dynamic.current
        else:
            self.stats.limit = self._options.max_concurrent_calls
        self._invocations_at_adjust = 0
        self._wakeup = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        queue.on_arrival(self._wakeup.set)

    def start(self) -> None:
        """Start receiving (call from the event loop the host runs in)."""
        loop = self._run_batches() if self.function.many else self._run_single()
        self._task = asyncio.create_task(loop, name=f"servicebus-trigger-{self.function.name}")

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop receiving, give invocations in flight `grace_seconds` to finish, then cancel them.

        One deadline for everything: the receive loop ends after its current turn (messages it
        received after the stop request are abandoned, not invoked), and whatever invocation
        is still running when the grace period is over is cut short and abandoned.
        """
        self._stopping = True
        self._wakeup.set()
        deadline = time.monotonic() + grace_seconds
        if self._task is not None:
            # The batch loop waits for its invocation, so this is also the batch's grace.
            await asyncio.wait({self._task}, timeout=grace_seconds)
        if self._in_flight:
            remaining = max(0.0, deadline - time.monotonic())
            _, pending = await asyncio.wait(set(self._in_flight), timeout=remaining)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("%d invocation(s) cut short at shutdown; their messages are abandoned", len(pending))
                await asyncio.wait(pending)
        if self._task is not None:
            await self._task

    async def _run_batches(self) -> None:
        """Cardinality many: one batch at a time, as the extension's batch receive loop does."""
        batch_size = self._options.max_message_batch_size
        while not self._stopping:
            self.stats.passes += 1
            self._wakeup.clear()
            received = await self._receive(batch_size)
            if await self._refused_while_stopping(received):
                return
            if not received:
                await self._sleep(IDLE_POLL_SECONDS)
                continue
            task = self._spawn(received, renew=False)
            # Waiting is not owning: `stop` decides when an invocation is cut short, and a
            # cancellation of this loop ends the loop without cancelling the invocation.
            await asyncio.wait({task})

    async def _run_single(self) -> None:
        """Cardinality one: as many invocations at once as the concurrency level allows."""
        next_adjust = 0.0
        while not self._stopping:
            self.stats.passes += 1
            now = time.monotonic()
            if now >= next_adjust:
                self._adjust()
                next_adjust = now + ADJUST_SECONDS
            free = self.stats.limit - len(self._in_flight)
            if free <= 0:
                # Clear first, so an arrival that set the event earlier does not turn this
                # wait into a busy loop; a slot freed from here on sets it again.
                self._wakeup.clear()
                await self._sleep(ADJUST_SECONDS)
                continue
            self._wakeup.clear()
            received = await self._receive(free)
            if await self._refused_while_stopping(received):
                return
            if not received:
                await self._sleep(IDLE_POLL_SECONDS)
            for message in received:
                self._spawn([message], renew=True)

    async def _refused_while_stopping(self, received: list[LockedMessage]) -> bool:
        """True once stopping; what was received meanwhile is abandoned, never invoked.

        As the extension does with a message that reaches a listener no longer running
        (`ServiceBusListener.EnsureIsRunning`: "The message will not be delivered to the
        function, and instead will be abandoned").
        """
        if not self._stopping:
            return False
        if received:
            await self._settle(received, succeeded=False)
        return True

    def _adjust(self) -> None:
        if self._dynamic is None or self._throttle is None:
            return
        throttled = self._throttle.check()
        # The extension skips the update while the function is idle (no message processed
        # since the last one: `ServiceBusListener.ConcurrencyUpdateManager.UpdateConcurrency`).
        if self.stats.invocations == self._invocations_at_adjust:
            return
        self._invocations_at_adjust = self.stats.invocations
        self.stats.limit = self._dynamic.update(throttled, self._throttle.consecutive)

    async def _receive(self, max_messages: int) -> list[LockedMessage]:
        try:
            return await self._queue.receive(max_messages)
        except (sqlite3.Error, OSError):
            logger.exception("receiving from the embedded queue failed; retrying in %s s", IDLE_POLL_SECONDS)
            await self._sleep(IDLE_POLL_SECONDS)
            return []

    def _spawn(self, batch: list[LockedMessage], *, renew: bool) -> asyncio.Task[None]:
        task = asyncio.create_task(self._invoke(batch, renew=renew))
        self._in_flight.add(task)
        self.stats.peak = max(self.stats.peak, len(self._in_flight))
        task.add_done_callback(self._finished)
        return task

    async def _invoke(self, batch: list[LockedMessage], *, renew: bool) -> None:
        self.stats.invocations += 1
        if self._dynamic is not None:
            self._dynamic.started()
        started = time.monotonic()
        renewal = asyncio.create_task(self._renew_locks(batch)) if renew else None
        succeeded = False
        cancelled: asyncio.CancelledError | None = None
        try:
            # The host's processing span: the function gets it as its context's trace context.
            with service_bus_invocation(
                self.function.name, [received.message for received in batch], many=self.function.many
            ) as context:
                async with asyncio.timeout(self._timeout):
                    await self.function.invoke([to_function_message(received) for received in batch], context)
            succeeded = True
        except asyncio.CancelledError as exc:
            cancelled = exc
        except TimeoutError:
            self._failed(batch, f"ran past functionTimeout ({self._timeout:g} s)")
        except Exception:
            self._failed(batch, "failed")
        finally:
            if renewal is not None:
                renewal.cancel()
                # wait(), not await: a cancellation of this task must not be taken for the renewal's.
                await asyncio.wait({renewal})
            if self._dynamic is not None:
                self._dynamic.completed(time.monotonic() - started)
        if cancelled is None:
            await self._settle(batch, succeeded)
            return
        # Cut short (shutdown): abandon, shielded so that a second cancellation cannot stop
        # the abandon halfway, then end as cancelled.
        await asyncio.shield(self._settle(batch, succeeded=False))
        raise cancelled

    def _failed(self, batch: list[LockedMessage], what: str) -> None:
        self.stats.failures += 1
        logger.error(
            "function %s %s on %s; abandoning %s",
            self.function.name,
            what,
            _describe(batch),
            "it" if len(batch) == 1 else "them",
            exc_info=True,
        )

    async def _settle(self, batch: list[LockedMessage], succeeded: bool) -> None:
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

    async def _renew_locks(self, batch: list[LockedMessage]) -> None:
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


def _describe(batch: list[LockedMessage]) -> str:
    first = batch[0]
    if len(batch) == 1:
        return f"message {first.message.message_id} (delivery {first.delivery_count})"
    return f"a batch of {len(batch)} messages from {first.message.message_id}"


def to_function_message(received: LockedMessage) -> FunctionsServiceBusMessage:
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
