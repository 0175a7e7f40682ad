"""The local host's Service Bus trigger loop over a real embedded queue file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import azure.functions as func
import pytest

from cloudscale_local.host.functions import ServiceBusFunction
from cloudscale_local.host.host_config import ConcurrencyOptions, HostConfig, ServiceBusOptions
from cloudscale_local.host.servicebus_trigger import ServiceBusTrigger
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue, LockedMessage
from shared.domain.dead_letter_reasons import MAX_DELIVERY_COUNT_EXCEEDED
from shared.domain.envelope import QueueMessage

Handler = Callable[[func.ServiceBusMessage], Awaitable[None]]
BatchHandler = Callable[[list[func.ServiceBusMessage]], Awaitable[None]]


def messages(count: int) -> list[QueueMessage]:
    return [QueueMessage(message_id=f"m-{n}", body=f'{{"n": {n}}}'.encode(), subject="page_view") for n in range(count)]


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[EmbeddedQueue]:
    opened = EmbeddedQueue(tmp_path / "queue.sqlite3", lock_seconds=0.4, max_delivery_count=3)
    yield opened
    opened.close()


def trigger_for(
    queue: EmbeddedQueue,
    handler: Handler | BatchHandler,
    *,
    max_calls: int = 4,
    dynamic: bool = False,
    batch_size: int | None = None,
    function_timeout: float | None = 60.0,
) -> ServiceBusTrigger:
    """A trigger for `handler`; with `batch_size`, cardinality many and that maxMessageBatchSize."""
    function = ServiceBusFunction(
        name="process_event",
        queue_name="events",
        connection="ServiceBusConnection",
        handler=handler,
        argument="msg",
        many=batch_size is not None,
    )
    config = HostConfig(
        service_bus=ServiceBusOptions(
            max_concurrent_calls=max_calls, max_auto_lock_renewal_seconds=10, max_message_batch_size=batch_size or 1000
        ),
        concurrency=ConcurrencyOptions(dynamic_concurrency_enabled=dynamic),
        function_timeout_seconds=function_timeout,
    )
    return ServiceBusTrigger(function, queue, config)


async def wait_until(condition: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def drained(queue: EmbeddedQueue) -> bool:
    return await queue.depth() == 0


async def test_each_message_reaches_the_function_once_and_is_completed(queue: EmbeddedQueue) -> None:
    seen: list[func.ServiceBusMessage] = []

    async def handler(msg: func.ServiceBusMessage) -> None:
        seen.append(msg)

    trigger = trigger_for(queue, handler)
    trigger.start()
    await queue.send(messages(5))
    await wait_until(lambda: drained(queue))
    await trigger.stop()

    assert sorted(m.message_id for m in seen) == [f"m-{n}" for n in range(5)]
    first = next(m for m in seen if m.message_id == "m-0")
    assert first.get_body() == b'{"n": 0}'
    assert first.delivery_count == 1
    assert first.subject == "page_view"
    assert first.enqueued_time_utc is not None
    assert trigger.stats.completed == 5


async def test_the_lock_is_renewed_while_the_function_runs(tmp_path: Path) -> None:
    # GIVEN a 1 s lock (renewed every 0.5 s: slack for a loaded CI machine) and a function
    # that takes two and a half times as long
    queue = EmbeddedQueue(tmp_path / "renewal.sqlite3", lock_seconds=1.0, max_delivery_count=3)
    deliveries: list[int] = []

    async def slow(msg: func.ServiceBusMessage) -> None:
        deliveries.append(msg.delivery_count or 0)
        await asyncio.sleep(2.5)

    trigger = trigger_for(queue, slow)
    trigger.start()
    await queue.send(messages(1))
    await wait_until(lambda: drained(queue))
    await trigger.stop()

    queue.close()
    # THEN it was never delivered a second time behind the first invocation's back
    assert deliveries == [1]
    assert trigger.stats.completed == 1


async def test_a_failing_function_is_retried_then_dead_lettered(queue: EmbeddedQueue) -> None:
    calls: list[int] = []

    async def failing(msg: func.ServiceBusMessage) -> None:
        calls.append(msg.delivery_count or 0)
        raise RuntimeError("the store is down")

    trigger = trigger_for(queue, failing)
    trigger.start()
    await queue.send(messages(1))
    await wait_until(lambda: drained(queue))
    await trigger.stop()

    assert calls == [1, 2, 3]
    [dead] = await queue.dead_letters()
    assert dead.reason == MAX_DELIVERY_COUNT_EXCEEDED
    assert trigger.stats.abandoned == 3


class PeakCounter:
    """A handler that takes 50 ms and remembers how many ran at once."""

    def __init__(self) -> None:
        self.running = self.peak = 0

    async def handle(self, msg: func.ServiceBusMessage) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1


async def test_concurrency_stays_within_max_concurrent_calls(queue: EmbeddedQueue) -> None:
    handler = PeakCounter()
    trigger = trigger_for(queue, handler.handle, max_calls=3)
    await queue.send(messages(30))
    trigger.start()
    await wait_until(lambda: drained(queue))
    await trigger.stop()

    assert handler.peak == 3
    assert trigger.stats.completed == 30


async def test_dynamic_concurrency_starts_at_one_and_grows_under_load(queue: EmbeddedQueue) -> None:
    # GIVEN dynamic concurrency, which ignores maxConcurrentCalls and starts at 1
    handler = PeakCounter()
    trigger = trigger_for(queue, handler.handle, max_calls=1, dynamic=True)
    assert trigger.stats.limit == 1
    await queue.send(messages(200))
    trigger.start()
    await wait_until(lambda: drained(queue), within=30)
    await trigger.stop()

    # THEN after the host's five healthy throttle checks it rose above 1 (and above maxConcurrentCalls)
    assert trigger.stats.limit > 1
    assert handler.peak > 1


async def test_an_invocation_cut_short_at_shutdown_is_abandoned_for_the_next_start(queue: EmbeddedQueue) -> None:
    started = asyncio.Event()

    async def stuck(msg: func.ServiceBusMessage) -> None:
        started.set()
        await asyncio.sleep(60)

    trigger = trigger_for(queue, stuck)
    trigger.start()
    await queue.send(messages(1))
    await asyncio.wait_for(started.wait(), 5)
    await trigger.stop(grace_seconds=0.1)

    # THEN its message was abandoned, as the host abandons a failed invocation's messages:
    # available at once, its first delivery counted, not locked until the lock runs out
    [again] = await queue.receive(1)
    assert again.message.message_id == "m-0"
    assert again.delivery_count == 2
    assert trigger.stats.abandoned == 1


async def test_an_invocation_past_function_timeout_fails_and_its_message_is_abandoned(queue: EmbeddedQueue) -> None:
    deliveries: list[int] = []

    async def slow_first_time(msg: func.ServiceBusMessage) -> None:
        deliveries.append(msg.delivery_count or 0)
        if len(deliveries) == 1:
            await asyncio.sleep(30)

    trigger = trigger_for(queue, slow_first_time, function_timeout=0.2)
    trigger.start()
    await queue.send(messages(1))
    await wait_until(lambda: drained(queue))
    await trigger.stop()

    assert deliveries == [1, 2]
    assert (trigger.stats.failures, trigger.stats.abandoned, trigger.stats.completed) == (1, 1, 1)


async def test_a_saturated_loop_waits_instead_of_spinning(queue: EmbeddedQueue) -> None:
    # GIVEN one slot, taken by a long invocation, and more messages arriving
    release = asyncio.Event()

    async def blocking(msg: func.ServiceBusMessage) -> None:
        await release.wait()

    trigger = trigger_for(queue, blocking, max_calls=1)
    trigger.start()
    await queue.send(messages(1))
    await wait_until(lambda: asyncio.sleep(0, result=trigger.stats.invocations == 1))
    passes_before = trigger.stats.passes
    await queue.send([QueueMessage(message_id="late", body=b"{}")])
    await asyncio.sleep(0.5)
    # THEN the loop woke a handful of times (arrival, periodic adjustment), not thousands
    assert trigger.stats.passes - passes_before < 20
    release.set()
    await wait_until(lambda: drained(queue))
    await trigger.stop()


async def test_cardinality_many_hands_over_batches_of_at_most_max_message_batch_size(queue: EmbeddedQueue) -> None:
    # GIVEN 25 queued messages and a batch function taking at most 10 at a time
    batches: list[list[str]] = []

    async def handler(msg: list[func.ServiceBusMessage]) -> None:
        batches.append([m.message_id or "" for m in msg])

    await queue.send(messages(25))
    trigger = trigger_for(queue, handler, max_calls=2, batch_size=10)
    trigger.start()
    await wait_until(lambda: drained(queue))
    await trigger.stop()

    # THEN each message arrived once, in batches no larger than 10, and all were completed
    assert sorted(m for batch in batches for m in batch) == sorted(f"m-{n}" for n in range(25))
    assert max(len(batch) for batch in batches) == 10
    assert trigger.stats.invocations == len(batches) < 25
    assert trigger.stats.completed == 25


async def test_a_failing_batch_is_abandoned_whole_and_delivered_again(queue: EmbeddedQueue) -> None:
    # GIVEN a batch function that fails the first time it sees a batch
    deliveries: list[list[tuple[str, int]]] = []

    async def fails_once(msg: list[func.ServiceBusMessage]) -> None:
        deliveries.append([(m.message_id or "", m.delivery_count or 0) for m in msg])
        if len(deliveries) == 1:
            raise RuntimeError("the store is down")

    await queue.send(messages(3))
    trigger = trigger_for(queue, fails_once, max_calls=1, batch_size=10)
    trigger.start()
    await wait_until(lambda: drained(queue))
    await trigger.stop()

    # THEN the whole batch came back on its second delivery, and nothing was dead-lettered
    assert deliveries == [[(f"m-{n}", 1) for n in range(3)], [(f"m-{n}", 2) for n in range(3)]]
    assert trigger.stats.abandoned == 3
    assert trigger.stats.completed == 3
    assert await queue.dead_letter_depth() == 0


async def test_batches_run_one_at_a_time_whatever_the_concurrency_settings(queue: EmbeddedQueue) -> None:
    # GIVEN a batch function, maxConcurrentCalls 8 and dynamic concurrency on
    running = peak = 0

    async def handler(msg: list[func.ServiceBusMessage]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    await queue.send(messages(40))
    trigger = trigger_for(queue, handler, max_calls=8, dynamic=True, batch_size=5)
    trigger.start()
    await wait_until(lambda: drained(queue))
    await trigger.stop()

    # THEN one batch at a time, as the extension's batch receive loop runs them
    assert peak == 1
    assert trigger.stats.peak == 1
    assert trigger.stats.invocations == 8


async def test_the_locks_of_a_running_batch_are_not_renewed(tmp_path: Path) -> None:
    # GIVEN a 1 s lock and a batch function that takes two and a half times as long
    queue = EmbeddedQueue(tmp_path / "queue.sqlite3", lock_seconds=1.0, max_delivery_count=3)
    counts: list[list[int]] = []

    async def slow_first_time(msg: list[func.ServiceBusMessage]) -> None:
        counts.append([m.delivery_count or 0 for m in msg])
        if len(counts) == 1:
            await asyncio.sleep(2.5)

    await queue.send(messages(3))
    trigger = trigger_for(queue, slow_first_time, max_calls=2, batch_size=10)
    trigger.start()
    await wait_until(lambda: drained(queue), within=15)
    await trigger.stop()
    queue.close()

    # THEN the locks ran out during the first invocation, whose completion was refused, and
    # the batch was delivered again: on Azure a batch must settle within the lock duration
    assert counts == [[1, 1, 1], [2, 2, 2]]
    assert trigger.stats.completed == 3


async def test_stop_cuts_a_running_batch_short_within_the_grace_period(queue: EmbeddedQueue) -> None:
    # GIVEN a batch function stuck in a long call
    started = asyncio.Event()

    async def stuck(msg: list[func.ServiceBusMessage]) -> None:
        started.set()
        await asyncio.sleep(60)

    await queue.send(messages(3))
    trigger = trigger_for(queue, stuck, batch_size=10)
    trigger.start()
    await asyncio.wait_for(started.wait(), 5)

    # WHEN the host stops with a short grace period
    begun = time.monotonic()
    await trigger.stop(grace_seconds=0.2)

    # THEN the stop kept to it, and the batch was handed back at once
    assert time.monotonic() - begun < 2
    assert sorted(m.message.message_id for m in await queue.receive(10)) == ["m-0", "m-1", "m-2"]


class GatedQueue(EmbeddedQueue):
    """The embedded queue, whose receive hands its messages over only when `gate` is open."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, lock_seconds=30, max_delivery_count=5)
        self.gate = asyncio.Event()
        self.gate.set()

    async def receive(self, max_messages: int = 1) -> list[LockedMessage]:
        received = await super().receive(max_messages)
        await self.gate.wait()
        return received


@pytest.mark.parametrize("batch_size", [None, 10], ids=["single", "batch"])
async def test_messages_received_while_stopping_are_abandoned_not_invoked(
    tmp_path: Path, batch_size: int | None
) -> None:
    # GIVEN a receive that is under way (its messages locked) when the stop comes
    gated = GatedQueue(tmp_path / "gated.sqlite3")
    calls: list[object] = []

    async def handler(msg: object) -> None:
        calls.append(msg)

    await gated.send(messages(3))
    gated.gate.clear()
    trigger = trigger_for(gated, handler, batch_size=batch_size)
    trigger.start()
    await asyncio.sleep(0.2)
    stopping = asyncio.create_task(trigger.stop(grace_seconds=1))
    await asyncio.sleep(0.05)
    gated.gate.set()
    await asyncio.wait_for(stopping, 5)

    # THEN nothing was invoked after the stop, and the messages are free again, not locked
    assert calls == []
    again = await EmbeddedQueue.receive(gated, 10)
    assert sorted(m.message.message_id for m in again) == ["m-0", "m-1", "m-2"]
    gated.close()


async def test_cancelling_the_batch_loop_ends_it_without_starting_another_batch(queue: EmbeddedQueue) -> None:
    # GIVEN a batch loop with a slow batch in flight and more messages waiting
    started = asyncio.Event()

    async def slow(msg: list[func.ServiceBusMessage]) -> None:
        started.set()
        await asyncio.sleep(0.5)

    await queue.send(messages(6))
    trigger = trigger_for(queue, slow, batch_size=3)
    trigger.start()
    await asyncio.wait_for(started.wait(), 5)

    # WHEN the loop itself is cancelled (as asyncio.run cancels every task at teardown)
    loop_task = trigger._task
    assert loop_task is not None
    loop_task.cancel()
    await asyncio.wait({loop_task}, timeout=2)

    # THEN it ended, and it did not go on to a second batch beside the first
    assert loop_task.cancelled()
    await asyncio.sleep(0.7)
    assert trigger.stats.invocations == 1
    assert trigger.stats.peak == 1
