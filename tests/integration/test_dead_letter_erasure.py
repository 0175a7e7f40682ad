"""An erased subject's dead letters are removed, and no one else's, on the real embedded queue."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters.dead_letters.embedded import EmbeddedDeadLetterBrowser, EmbeddedDeadLetterSink
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.dead_letter_erasure import DeadLetterScanLimitError, erase_subject_dead_letters, names_subject
from shared.domain.dead_letter_reasons import MAX_DELIVERY_COUNT_EXCEEDED, SCHEMA_INVALID, UNDECODABLE
from shared.domain.envelope import Envelope, QueueMessage, to_queue_message
from shared.domain.events import Event
from shared.domain.privacy import Subject

U = Subject("acme", "userId", "user-u")


def event_message(tenant_id: str = "acme", **identifiers: str) -> QueueMessage:
    """A queued event of this tenant with these identifiers (`userId`, `anonymousId`), as ingest sends it."""
    event = Event.model_validate(
        {"eventType": "page_view", "tenantId": tenant_id, "eventId": str(uuid.uuid4()), **identifiers}
    )
    envelope = Envelope(
        event=event,
        received_at=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
        client_network="203.0.113.0/24",
        client_key="k",
        ip_requests_last_minute=1,
    )
    return to_queue_message(envelope)


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[EmbeddedQueue]:
    queue = EmbeddedQueue(tmp_path / "queue.sqlite3", max_delivery_count=2)
    yield queue
    queue.close()


@pytest.fixture
def browser(queue: EmbeddedQueue) -> EmbeddedDeadLetterBrowser:
    return EmbeddedDeadLetterBrowser(queue)


async def park(queue: EmbeddedQueue, *messages: QueueMessage) -> None:
    """Park each message as the process stage parks poison."""
    for message in messages:
        await EmbeddedDeadLetterSink(queue).dead_letter(message, SCHEMA_INVALID, "event.properties: too deep")


async def fail_until_dead_lettered(queue: EmbeddedQueue, message: QueueMessage) -> None:
    """Send `message` and abandon every delivery until the queue dead-letters it itself."""
    await queue.send([message])
    while received := await queue.receive(10):
        for locked in received:
            await queue.abandon(locked.lock_token)
    assert (await queue.dead_letters(100))[-1].reason == MAX_DELIVERY_COUNT_EXCEEDED


async def message_ids(browser: EmbeddedDeadLetterBrowser) -> list[str]:
    return [d.message_id for d in await browser.list(100)]


async def test_only_the_subjects_dead_letters_are_removed(
    queue: EmbeddedQueue, browser: EmbeddedDeadLetterBrowser
) -> None:
    # GIVEN dead letters of U (parked as poison, and dead-lettered after too many deliveries)
    parked_u = event_message(userId="user-u")
    failed_u = event_message(userId="user-u", anonymousId="browser-1")
    await park(queue, parked_u)
    await fail_until_dead_lettered(queue, failed_u)
    # AND of another user, of another tenant's user with the same id, of an anonymous id equal
    # to U's user id, and a body that is not JSON at all
    others = [
        event_message(userId="user-v"),
        event_message("globex", userId="user-u"),
        event_message(anonymousId="user-u"),
        QueueMessage(message_id="garbage", body=b"\xff not json user-u"),
    ]
    await park(queue, *others[:3])
    await EmbeddedDeadLetterSink(queue).dead_letter(others[3], UNDECODABLE, "the body is not JSON")

    # WHEN U is erased from the dead letters
    found, removed = await erase_subject_dead_letters(browser, U)

    # THEN U's two are gone and every other one is still there
    assert (found, removed) == (2, 2)
    assert await message_ids(browser) == [m.message_id for m in others]
    # AND running again finds nothing
    assert await erase_subject_dead_letters(browser, U) == (0, 0)


async def test_an_anonymous_id_is_matched_in_its_own_field(
    queue: EmbeddedQueue, browser: EmbeddedDeadLetterBrowser
) -> None:
    by_anonymous_id = event_message(anonymousId="browser-1")
    with_user_id_too = event_message(userId="user-v", anonymousId="browser-1")
    user_id_equal = event_message(userId="browser-1")
    await park(queue, by_anonymous_id, with_user_id_too, user_id_equal)

    found, removed = await erase_subject_dead_letters(browser, Subject("acme", "anonymousId", "browser-1"))

    assert (found, removed) == (2, 2)
    assert await message_ids(browser) == [user_id_equal.message_id]


async def test_dead_letters_beyond_the_first_page_are_found(
    queue: EmbeddedQueue, browser: EmbeddedDeadLetterBrowser
) -> None:
    await park(queue, *(event_message(userId=f"other-{n}") for n in range(5)))
    await park(queue, event_message(userId="user-u"), event_message(userId="user-u"))

    assert await erase_subject_dead_letters(browser, U, page=2) == (2, 2)
    assert len(await browser.list(100)) == 5


async def test_past_the_scan_bound_it_removes_what_it_read_and_says_it_did_not_finish(
    queue: EmbeddedQueue, browser: EmbeddedDeadLetterBrowser
) -> None:
    # GIVEN four dead letters, U's second and fourth, and a bound of three
    oldest_u, newest_u = event_message(userId="user-u"), event_message(userId="user-u")
    await park(queue, event_message(userId="user-v"), oldest_u, event_message(userId="user-v"), newest_u)

    # WHEN U is erased reading at most three
    with pytest.raises(DeadLetterScanLimitError, match="more than 3 dead letters"):
        await erase_subject_dead_letters(browser, U, page=1, max_scan=3)

    # THEN the one it read is removed, the one past the bound is not (and it said so)
    assert oldest_u.message_id not in await message_ids(browser)
    assert newest_u.message_id in await message_ids(browser)


async def test_exactly_as_many_dead_letters_as_the_bound_is_complete(
    queue: EmbeddedQueue, browser: EmbeddedDeadLetterBrowser
) -> None:
    await park(queue, event_message(userId="user-v"), event_message(userId="user-u"), event_message(userId="user-v"))

    assert await erase_subject_dead_letters(browser, U, page=1, max_scan=3) == (1, 1)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"event": "x"}',
        b'{"event": {"userId": "user-u"}}',
        b'{"event": {"tenantId": 7, "userId": "user-u"}}',
    ],
)
def test_a_body_naming_no_tenant_names_no_subject(body: bytes) -> None:
    assert not names_subject(body, U)
