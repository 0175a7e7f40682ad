"""The erasure runner over the real embedded stores: steps in order, counts, idempotency, crashes and leases.

Time is the test's: the runner's clock and its waits (`settle`, `verify`) move a fake clock, so
a lease expires when the test says so, and no test waits for a real cache period.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from privacy.erasure import ErasureBusyError, ErasureNotFoundError, ErasureRunner
from shared.assembly import build_erasure_runner
from shared.bootstrap import Container
from shared.domain.analytics import to_analytics_row
from shared.domain.envelope import QueueMessage, event_message_id
from shared.domain.live_events import LiveEvent
from shared.domain.privacy import ERASURE_STEPS, ErasureStep, StepResult, Subject
from shared.domain.stored_event import StoredEvent
from shared.settings import load_settings

TENANT = "acme"
ERASED = Subject(TENANT, "userId", "user-erased")
LEASE_SECONDS = 60.0
SETTLE_SECONDS = 3.0
START = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class Crash(BaseException):
    """A runner dying outright (no cleanup runs, as with SIGKILL)."""


@dataclass
class FakeTime:
    """The runner's clock; its waits move it instead of taking time. `crash_on_wait` n: the nth wait dies."""

    now: datetime = START
    waits: list[float] = field(default_factory=list)
    crash_on_wait: int | None = None

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.crash_on_wait is not None and len(self.waits) == self.crash_on_wait:
            raise Crash
        self.now += timedelta(seconds=seconds)


def stored_event(n: int, *, user_id: str | None, anonymous_id: str | None = None, tenant: str = TENANT) -> StoredEvent:
    event_id = str(uuid.UUID(int=n))
    document: dict[str, object] = {
        "id": event_id,
        "eventId": event_id,
        "tenantId": tenant,
        "eventType": "page_view",
        "timestamp": "2026-11-27T11:00:00+00:00",
        "url": f"/page/{n}",
        "enrichment": {
            "clientNetwork": "198.51.100.0/24",
            "receivedAt": "2026-11-27T11:00:00+00:00",
            "processedAt": "2026-11-27T11:00:00.200000+00:00",
            "queueLatencyMs": 200.0,
        },
        "fraud": {"score": 0.0, "suspicious": False, "reasons": []},
    }
    if user_id is not None:
        document["userId"] = user_id
    if anonymous_id is not None:
        document["anonymousId"] = anonymous_id
    return StoredEvent.from_document(document)


def envelope(n: int, user_id: str) -> QueueMessage:
    event_id = str(uuid.UUID(int=n))
    body = {
        "schemaVersion": 2,
        "event": {"eventType": "page_view", "tenantId": TENANT, "eventId": event_id, "userId": user_id},
        "receivedAt": "2026-11-27T11:00:00+00:00",
        "clientNetwork": "198.51.100.0/24",
        "clientKey": "k",
        "ipRequestsLastMinute": 1,
    }
    return QueueMessage(message_id=event_message_id(TENANT, event_id), body=orjson.dumps(body))


@pytest.fixture
async def container(tmp_path: Path) -> AsyncIterator[Container]:
    """Embedded stores holding 3 events of the erased user, 2 of others, one anonymous; 1 dead letter each."""
    built = Container(load_settings({"CLOUDSCALE_DATA_DIR": str(tmp_path)}))
    events = [
        *(stored_event(n, user_id=ERASED.value) for n in (1, 2, 3)),
        stored_event(4, user_id="user-kept"),
        stored_event(5, user_id="user-other"),
        stored_event(6, user_id=None, anonymous_id=ERASED.value),  # the same value as another field: kept
        stored_event(7, user_id=ERASED.value, tenant="other-tenant"),  # the same id in another tenant: kept
    ]
    for event in events:
        await built.event_store.save(event)
    await built.analytics_sink.write([to_analytics_row(event, START) for event in events])
    await built.embedded_queue.park(envelope(1, ERASED.value), "ProcessingFailed", "test")
    await built.embedded_queue.park(envelope(4, "user-kept"), "ProcessingFailed", "test")
    try:
        yield built
    finally:
        await built.close()


def runner_for(container: Container, time: FakeTime, owner: str) -> ErasureRunner:
    built = build_erasure_runner(container)
    # The same runner, on the test's time and with a name the test knows.
    return ErasureRunner(
        container.privacy_store,
        container.suppression_list,
        container.event_store,
        container.analytics_eraser,
        built._dead_letters,
        built._erase_dead_letters,
        container.subject_key_secret,
        settle_seconds=SETTLE_SECONDS,
        lease_seconds=LEASE_SECONDS,
        owner=owner,
        clock=time.clock,
        sleep=time.sleep,
        erase_kept_events=built._erase_kept_events,
    )


async def remaining(container: Container, subject: Subject) -> tuple[int, int, int]:
    """What is left of the subject: (events, analytics rows, dead letters)."""
    browser = container.dead_letter_browser
    dead = [d for d in await browser.list(1000) if subject.value.encode() in d.body]
    return (
        await container.event_store.count_subject_events(subject),
        await container.analytics_eraser.count_subject_rows(subject),
        len(dead),
    )


async def test_an_erasure_runs_every_step_in_order_and_counts_what_each_store_held(container: Container) -> None:
    # GIVEN a recorded erasure of a user with events, analytics rows and a dead letter
    time = FakeTime()
    runner = runner_for(container, time, "runner-a")
    request = await runner.request(ERASED)
    assert request.status == "pending"
    assert request.sealed_subject is not None

    # WHEN it runs
    seen: list[tuple[ErasureStep, StepResult]] = []
    finished = await runner.run(request.id, on_progress=lambda step, result: seen.append((step, result)))

    # THEN each step ran once, in order, with the counts of each store
    assert [step for step, _ in seen] == list(ERASURE_STEPS)
    assert finished.status == "finished"
    assert finished.finished_at == time.now
    assert (finished.step("events").found, finished.step("events").removed) == (3, 3)
    assert (finished.step("analytics").found, finished.step("analytics").removed) == (3, 3)
    assert (finished.step("dead_letters").found, finished.step("dead_letters").removed) == (1, 1)
    assert finished.step("verify").found == 0
    # the settle and verify waits are each a full cache period
    assert time.waits == [SETTLE_SECONDS, SETTLE_SECONDS]
    # AND nothing of the user is left, while every other event is
    assert await remaining(container, ERASED) == (0, 0, 0)
    assert await container.event_store.get("acme", str(uuid.UUID(int=4))) is not None
    assert await container.event_store.get("acme", str(uuid.UUID(int=6))) is not None
    assert await container.event_store.get("other-tenant", str(uuid.UUID(int=7))) is not None
    assert len(await container.dead_letter_browser.list(1000)) == 1
    # AND the tombstone suppresses the user's later events
    suppression = await container.privacy_store.get_suppression(TENANT, request.subject_hash)
    assert suppression is not None
    assert (suppression.mode, suppression.erased_at) == ("suppress", request.created_at)


async def test_the_finished_record_keeps_no_identifier(container: Container) -> None:
    runner = runner_for(container, FakeTime(), "runner-a")
    request = await runner.request(ERASED)

    finished = await runner.run(request.id)

    stored = await container.privacy_store.get_erasure(request.id)
    assert stored is not None
    assert stored.sealed_subject is None
    assert (stored.lease_owner, stored.lease_until) == (None, None)
    assert finished == stored
    status = orjson.dumps(stored.to_status())
    assert ERASED.value.encode() not in status
    assert stored.to_status()["subjectHash"] == ERASED.hash(await container.subject_key_secret())


async def test_a_second_request_for_the_same_subject_returns_the_unfinished_one(container: Container) -> None:
    runner = runner_for(container, FakeTime(), "runner-a")

    first = await runner.request(ERASED)
    again = await runner.request(ERASED, suppress=False)
    other = await runner.request(Subject(TENANT, "userId", "user-kept"))

    assert again.id == first.id
    assert other.id != first.id
    assert {r.id for r in await container.privacy_store.list_erasures(unfinished_only=True)} == {first.id, other.id}
    # once finished, a new request is a new erasure (the subject may have come back in delete-only mode)
    await runner.run(first.id)
    assert (await runner.request(ERASED)).id != first.id


async def test_a_runner_that_dies_after_the_events_step_leaves_a_record_the_next_one_finishes(
    container: Container,
) -> None:
    # GIVEN a runner that dies in its second wait (verify's), after events, analytics and dead letters
    time = FakeTime(crash_on_wait=2)
    dying = runner_for(container, time, "runner-dies")
    request = await dying.request(ERASED)
    with pytest.raises(Crash):
        await dying.run(request.id)
    left = await container.privacy_store.get_erasure(request.id)
    assert left is not None
    assert left.status == "running"
    assert left.next_step() == "verify"
    assert left.lease_owner == "runner-dies"

    # WHEN another runner tries at once, it is refused: the dead runner's lease is still live
    time.crash_on_wait = None
    second = runner_for(container, time, "runner-b")
    with pytest.raises(ErasureBusyError):
        await second.run(request.id)
    assert await second.run_due(budget_seconds=30) == []

    # WHEN the lease has expired
    time.now += timedelta(seconds=LEASE_SECONDS + 1)
    [finished] = await second.run_due(budget_seconds=30)

    # THEN the second runner finished it, and the counts the first one recorded stand
    assert finished.id == request.id
    assert finished.status == "finished"
    assert (finished.step("events").found, finished.step("events").removed) == (3, 3)
    assert (finished.step("analytics").found, finished.step("analytics").removed) == (3, 3)
    assert finished.step("dead_letters").removed == 1
    assert finished.step("verify").found == 0
    assert await remaining(container, ERASED) == (0, 0, 0)


async def test_a_crash_before_anything_was_deleted_is_finished_with_every_count(container: Container) -> None:
    # GIVEN a runner that dies in the settle wait: the tombstone is written, nothing deleted yet
    time = FakeTime(crash_on_wait=1)
    request = await runner_for(container, time, "runner-dies").request(ERASED)
    with pytest.raises(Crash):
        await runner_for(container, time, "runner-dies").run(request.id)

    # WHEN its lease expires and the timer's runner comes by
    time.crash_on_wait = None
    time.now += timedelta(seconds=LEASE_SECONDS + 1)
    [finished] = await runner_for(container, time, "timer").run_due(budget_seconds=30)

    # THEN settle ran again and every store's count is there
    assert finished.step("events").removed == 3
    assert finished.step("analytics").removed == 3
    assert await remaining(container, ERASED) == (0, 0, 0)


async def test_a_live_lease_is_refused_and_an_expired_one_taken_over(container: Container) -> None:
    time = FakeTime()
    runner = runner_for(container, time, "runner-b")
    request = await runner.request(ERASED)
    held = await container.privacy_store.replace_erasure(
        replace(request, status="running", lease_owner="runner-a", lease_until=time.now + timedelta(seconds=10))
    )

    with pytest.raises(ErasureBusyError, match="runner-a"):
        await runner.run(request.id)
    stored = await container.privacy_store.get_erasure(request.id)
    assert stored == held

    time.now += timedelta(seconds=11)
    finished = await runner.run(request.id)
    assert finished.status == "finished"


async def test_a_runner_whose_lease_was_taken_over_stops_at_its_next_save(container: Container) -> None:
    # GIVEN a runner that is slow in its settle wait, while another takes the erasure over
    time = FakeTime()
    slow = runner_for(container, time, "runner-slow")
    request = await slow.request(ERASED)

    async def taken_over_meanwhile(seconds: float) -> None:
        await time.sleep(seconds)
        current = await container.privacy_store.get_erasure(request.id)
        assert current is not None
        await container.privacy_store.replace_erasure(replace(current, lease_owner="runner-fast"))

    slow._sleep = taken_over_meanwhile

    # WHEN the slow one saves its step THEN it stops, naming who has it, and deletes nothing more
    with pytest.raises(ErasureBusyError, match="runner-fast"):
        await slow.run(request.id)
    assert (await container.event_store.count_subject_events(ERASED)) == 3


async def test_delete_only_suppresses_while_it_runs_and_accepts_what_comes_after_it_finished(
    container: Container,
) -> None:
    # GIVEN a delete-only erasure whose runner dies in the settle wait
    time = FakeTime(crash_on_wait=1)
    request = await runner_for(container, time, "runner-dies").request(ERASED, suppress=False)
    with pytest.raises(Crash):
        await runner_for(container, time, "runner-dies").run(request.id)

    # THEN while it runs, the subject's events are dropped whenever received: the stores' deletes
    # take every event of the subject, so nothing received meanwhile may be kept either
    running = await container.privacy_store.get_suppression(TENANT, request.subject_hash)
    assert running is not None
    assert running.drops(time.now + timedelta(seconds=5))

    # WHEN it is finished
    time.crash_on_wait = None
    time.now += timedelta(seconds=LEASE_SECONDS + 1)
    [finished] = await runner_for(container, time, "timer").run_due(budget_seconds=30)

    # THEN the tombstone drops what was received before the erasure finished, and only that
    suppression = await container.privacy_store.get_suppression(TENANT, request.subject_hash)
    assert suppression is not None
    assert suppression.mode == "delete"
    assert finished.finished_at is not None
    assert suppression.drops(finished.finished_at - timedelta(microseconds=1))
    assert not suppression.drops(finished.finished_at)
    assert finished.to_status()["mode"] == "delete"
    assert await remaining(container, ERASED) == (0, 0, 0)


async def test_an_unknown_erasure_is_not_found(container: Container) -> None:
    with pytest.raises(ErasureNotFoundError):
        await runner_for(container, FakeTime(), "runner-a").run("er_" + "x" * 20)


async def test_without_a_queue_file_there_are_no_dead_letters_to_erase(tmp_path: Path) -> None:
    # GIVEN a data folder where nothing was ever queued
    container = Container(load_settings({"CLOUDSCALE_DATA_DIR": str(tmp_path)}))
    try:
        await container.event_store.save(stored_event(1, user_id=ERASED.value))
        runner = runner_for(container, FakeTime(), "runner-a")

        finished = await runner.run((await runner.request(ERASED)).id)

        # THEN the step is done with nothing found, and no queue file was made
        assert finished.step("dead_letters").found == 0
        assert finished.step("events").removed == 1
        assert not (tmp_path / "queue.sqlite3").exists()
    finally:
        await container.close()


async def test_an_erasure_recorded_to_run_here_is_not_taken_by_the_timer_in_between(container: Container) -> None:
    # GIVEN an erasure that `cloudscale erase` recorded to run itself next
    time = FakeTime()
    request = await runner_for(container, time, "cli").request(ERASED, claim=True)

    # WHEN the timer's runner comes by before the command started running it
    taken = await runner_for(container, time, "timer").run_due(budget_seconds=30)

    # THEN it leaves it, and the command runs it
    assert taken == []
    finished = await runner_for(container, time, "cli").run(request.id)
    assert finished.status == "finished"


async def test_an_erased_users_kept_live_events_are_gone_and_counted_with_the_events_step(
    container: Container,
) -> None:
    # GIVEN ingest kept events of the user (accepted and rejected) beside another user's
    log = container.live_events
    assert log is not None

    def kept(n: int, user: str, tenant: str = TENANT) -> LiveEvent:
        return LiveEvent(
            at=START,
            outcome="accepted" if n % 2 else "rejected",
            api="events",
            status=202,
            tenant_id=tenant,
            event_id=f"kept-{n}",
            event={"eventType": "x", "tenantId": tenant, "userId": user},
        )

    log.record([kept(1, ERASED.value), kept(2, ERASED.value), kept(3, "user-kept"), kept(5, ERASED.value, "other")])
    await log.flush()

    # WHEN the user is erased
    runner = runner_for(container, FakeTime(), "runner-a")
    finished = await runner.run((await runner.request(ERASED)).id)

    # THEN the events step removed the stored events and the kept ones (named in its detail), and only those
    assert (finished.step("events").found, finished.step("events").removed) == (3, 3)
    assert finished.step("events").detail == "also 2 kept live event(s) deleted"
    assert [event.event_id for event in await log.after(0, 100)] == ["kept-3", "kept-5"]


async def test_kept_live_events_are_erased_by_a_process_that_keeps_none_itself(container: Container) -> None:
    # GIVEN events kept by a host, and an erasure run where CLOUDSCALE_LIVE_EVENTS_KEPT=0 (a host
    # restarted with it, or `cloudscale erase` with it set): the file still holds them
    log = container.live_events
    assert log is not None
    log.record(
        [
            LiveEvent(
                at=START,
                outcome="rejected",
                api="events",
                status=202,
                tenant_id=TENANT,
                event_id="kept-1",
                event={"eventType": "x", "tenantId": TENANT, "userId": ERASED.value},
            )
        ]
    )
    await log.flush()
    keeping_none = Container(
        load_settings({"CLOUDSCALE_DATA_DIR": str(container.data_dir), "CLOUDSCALE_LIVE_EVENTS_KEPT": "0"})
    )
    try:
        # WHEN the user is erased there
        runner = runner_for(keeping_none, FakeTime(), "runner-a")
        finished = await runner.run((await runner.request(ERASED)).id)
    finally:
        await keeping_none.close()
    # THEN the kept event is gone all the same
    assert finished.step("events").detail == "also 1 kept live event(s) deleted"
    assert await log.after(0, 100) == []
