"""`cloudscale dlq` against a real embedded queue file, as an operator would run it.

The dead letters are made the ways the pipeline makes them: parked by the process stage
(`park`, then the original completed, or parked after it already left the queue), and
dead-lettered by the queue itself after too many deliveries.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import cloudscale_local.cli.dlq as dlq_module
from cloudscale_local.cli.main import main
from process.decoding import PoisonMessageError, decode_envelope
from shared.adapters.event_queue.dead_letter_table import DeadLetterRow
from shared.adapters.event_queue.embedded_queue import EmbeddedQueue
from shared.bootstrap import Container
from shared.domain.dead_letter_reasons import MAX_DELIVERY_COUNT_EXCEEDED, UNDECODABLE
from shared.domain.envelope import QueueMessage
from shared.ports import DeadLetter, DeadLetterBrowser, PortError, ProgressCallback, ReplayResult

Invoke = Callable[..., Result]

UNDECODABLE_BODY = b"\xff\xfe not json at all"


def envelope_body(number: int) -> bytes:
    return json.dumps({"schemaVersion": 1, "event": {"eventType": "page_view", "n": number}}).encode()


def queued(message_id: str, body: bytes) -> QueueMessage:
    return QueueMessage(
        message_id=message_id,
        body=body,
        subject="page_view",
        correlation_id=f"corr-{message_id}",
        application_properties={"tenantId": "acme", "schemaVersion": 1},
    )


async def seed(path: Path) -> None:
    """Dead letters of both kinds; `evt-3` and `evt-4` stay queued."""
    queue = EmbeddedQueue(path, max_delivery_count=2)
    try:
        await queue.send([queued(f"evt-{n}", envelope_body(n)) for n in range(1, 5)])
        # The process stage: parked while it is locked, then the host completes the original.
        [first] = await queue.receive()
        await queue.park(first.message, "SchemaInvalid", "event.tenantId: Field required")
        await queue.complete(first.lock_token)
        # A delivery the queue no longer holds (completed after a crash) is parked too.
        await queue.park(queued("evt-gone", UNDECODABLE_BODY), "UndecodableMessage", "the body is not JSON")
        # A transient failure every time: the queue dead-letters evt-2 after its last delivery.
        for _ in range(2):
            [again] = await queue.receive()
            await queue.abandon(again.lock_token)
        [next_one] = await queue.receive()  # moves evt-2 to the dead letters, delivers evt-3
        await queue.abandon(next_one.lock_token)
    finally:
        queue.close()


def read(path: Path) -> tuple[list[DeadLetterRow], list[QueueMessage]]:
    """The dead letters and the queued messages, read from the file."""

    async def both() -> tuple[list[DeadLetterRow], list[QueueMessage]]:
        queue = EmbeddedQueue(path)
        try:
            return await queue.dead_letters(), await queue.peek()
        finally:
            queue.close()

    return asyncio.run(both())


@pytest.fixture
def queue_path(tmp_path: Path) -> Path:
    path = tmp_path / "queue.sqlite3"
    asyncio.run(seed(path))
    return path


@pytest.fixture
def ids(queue_path: Path) -> dict[str, str]:
    """Dead-letter id by message id."""
    dead_letters, _ = read(queue_path)
    return {dead.message.message_id: str(dead.sequence_number) for dead in dead_letters}


@pytest.fixture
def invoke(tmp_path: Path) -> Invoke:
    runner = CliRunner()

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        environment = {"CLOUDSCALE_BACKEND": "embedded", "CLOUDSCALE_DATA_DIR": str(tmp_path), **(env or {})}
        result = runner.invoke(main, ["dlq", *args], input=input, env=environment)
        # Failures must be messages, never tracebacks: anything but a clean exit is a bug.
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return run


def test_the_seed_has_dead_letters_of_both_kinds(queue_path: Path, ids: dict[str, str]) -> None:
    dead_letters, waiting = read(queue_path)

    assert {dead.message.message_id: dead.reason for dead in dead_letters} == {
        "evt-1": "SchemaInvalid",
        "evt-gone": "UndecodableMessage",
        "evt-2": MAX_DELIVERY_COUNT_EXCEEDED,
    }
    assert [message.message_id for message in waiting] == ["evt-3", "evt-4"]


def test_list_shows_every_dead_letter_with_its_reason(invoke: Invoke, ids: dict[str, str]) -> None:
    result = invoke("list")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["ID", "SOURCE", "REASON", "MESSAGE"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:]}
    assert rows == {
        ids["evt-1"]: ["dead-letter", "SchemaInvalid", "evt-1"],
        ids["evt-2"]: ["dead-letter", MAX_DELIVERY_COUNT_EXCEEDED, "evt-2"],
        ids["evt-gone"]: ["dead-letter", "UndecodableMessage", "evt-gone"],
    }
    assert "event.tenantId: Field required" in result.stdout


def test_list_json_parses_and_carries_the_counts(invoke: Invoke, ids: dict[str, str]) -> None:
    result = invoke("list", "--json")

    assert result.exit_code == 0, result.output
    listed = {entry["messageId"]: entry for entry in json.loads(result.stdout)}
    assert set(listed) == {"evt-1", "evt-2", "evt-gone"}
    assert listed["evt-2"]["id"] == ids["evt-2"]
    assert listed["evt-2"]["reason"] == MAX_DELIVERY_COUNT_EXCEEDED
    assert listed["evt-2"]["deliveryCount"] == 2
    assert listed["evt-1"]["description"] == "event.tenantId: Field required"
    assert listed["evt-gone"]["bodyBytes"] == len(UNDECODABLE_BODY)
    assert listed["evt-1"]["deadLetteredAt"].endswith("+00:00")


def test_list_says_when_it_stopped_at_the_limit(invoke: Invoke, ids: dict[str, str]) -> None:
    result = invoke("list", "--limit", "2")

    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1 + 2 + 1
    assert "there may be more (--limit)" in result.stdout


def test_show_prints_the_reason_counts_and_the_json_body(invoke: Invoke, ids: dict[str, str]) -> None:
    result = invoke("show", ids["evt-1"])

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Message id:     evt-1" in out
    assert "Reason:         SchemaInvalid" in out
    assert "Description:    event.tenantId: Field required" in out
    assert "Deliveries:     1" in out
    assert "Correlation id: corr-evt-1" in out
    assert '"tenantId": "acme"' in out
    body_start = out.index("Body (")
    assert json.loads(out[out.index("\n", body_start) :]) == json.loads(envelope_body(1))
    assert '  "schemaVersion": 1,' in out, "the body is pretty-printed"


def test_show_prints_a_body_that_is_not_json_as_bytes(invoke: Invoke, ids: dict[str, str]) -> None:
    result = invoke("show", ids["evt-gone"])

    assert result.exit_code == 0, result.output
    assert repr(UNDECODABLE_BODY) in result.stdout


def test_show_json_parses_and_holds_the_exact_body(invoke: Invoke, ids: dict[str, str]) -> None:
    good = json.loads(invoke("show", ids["evt-1"], "--json").stdout)
    bad = json.loads(invoke("show", ids["evt-gone"], "--json").stdout)

    assert good["reason"] == "SchemaInvalid"
    assert good["body"] == json.loads(envelope_body(1))
    assert good["properties"] == {"tenantId": "acme", "schemaVersion": 1}
    assert bad["body"] is None
    assert base64.b64decode(bad["bodyBase64"]) == UNDECODABLE_BODY


@pytest.mark.parametrize("unknown", ["999", "abc"])
def test_show_of_an_unknown_id_fails_with_a_message(invoke: Invoke, ids: dict[str, str], unknown: str) -> None:
    result = invoke("show", unknown)

    assert result.exit_code == 1
    assert f"No dead letter with id '{unknown}'" in result.stderr
    assert result.stdout == ""


def test_replay_moves_the_message_back_under_its_id(invoke: Invoke, queue_path: Path, ids: dict[str, str]) -> None:
    result = invoke("replay", ids["evt-2"])

    assert result.exit_code == 0, result.output
    assert f"Replayed 1 message to queue 'events': {ids['evt-2']}." in result.stdout
    dead_letters, waiting = read(queue_path)
    assert "evt-2" not in {dead.message.message_id for dead in dead_letters}
    [replayed] = [message for message in waiting if message.message_id == "evt-2"]
    assert replayed == queued("evt-2", envelope_body(2)), "body and properties as first sent"
    assert invoke("show", ids["evt-2"]).exit_code == 1


def test_replaying_twice_is_harmless(invoke: Invoke, queue_path: Path, ids: dict[str, str]) -> None:
    assert invoke("replay", ids["evt-1"]).exit_code == 0
    after_first = read(queue_path)

    again = invoke("replay", ids["evt-1"])

    assert again.exit_code == 1
    assert f"already replayed, or a wrong id): {ids['evt-1']}" in again.stderr
    assert read(queue_path) == after_first
    _, waiting = read(queue_path)
    assert [message.message_id for message in waiting].count("evt-1") == 1


def test_replay_of_several_ids_reports_the_unknown_ones(invoke: Invoke, queue_path: Path, ids: dict[str, str]) -> None:
    result = invoke("replay", ids["evt-1"], "424242")

    assert result.exit_code == 1
    assert f"Replayed 1 message to queue 'events': {ids['evt-1']}." in result.stdout
    assert "424242" in result.stderr
    dead_letters, _ = read(queue_path)
    assert {dead.message.message_id for dead in dead_letters} == {"evt-2", "evt-gone"}


def test_replay_all_empties_the_dead_letter_queue(invoke: Invoke, queue_path: Path, ids: dict[str, str]) -> None:
    result = invoke("replay", "--all", "--yes")

    assert result.exit_code == 0, result.output
    assert "Replayed 3 messages to queue 'events'" in result.stdout
    dead_letters, waiting = read(queue_path)
    assert dead_letters == []
    assert sorted(message.message_id for message in waiting) == ["evt-1", "evt-2", "evt-3", "evt-4", "evt-gone"]

    assert "The dead-letter queue is empty." in invoke("list").stdout
    assert json.loads(invoke("list", "--json").stdout) == []
    nothing = invoke("replay", "--all", "--yes")
    assert nothing.exit_code == 0
    assert "nothing to replay" in nothing.stdout


def test_replay_all_asks_first(invoke: Invoke, queue_path: Path, ids: dict[str, str]) -> None:
    before = read(queue_path)

    result = invoke("replay", "--all", input="n\n")

    assert result.exit_code == 1
    assert "Replay every dead letter to queue 'events'?" in result.output
    assert read(queue_path) == before


@pytest.mark.parametrize("args", [(), ("--all", "7")])
def test_replay_needs_ids_or_all(invoke: Invoke, ids: dict[str, str], args: tuple[str, ...]) -> None:
    result = invoke("replay", *args)

    assert result.exit_code == 2
    assert "Give the IDs to replay, or --all" in result.stderr


def test_a_data_folder_without_a_queue_is_an_error_not_an_empty_queue(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("list", env={"CLOUDSCALE_DATA_DIR": str(tmp_path / "elsewhere")})

    assert result.exit_code == 1
    assert "No embedded queue at" in result.stderr
    assert "CLOUDSCALE_DATA_DIR" in result.stderr
    assert not (tmp_path / "elsewhere").exists(), "looking must not create a queue"


def test_invalid_settings_fail_with_the_variable_name(invoke: Invoke) -> None:
    result = invoke("list", env={"CLOUDSCALE_QUEUE_LOCK_SECONDS": "soon"})

    assert result.exit_code == 1
    assert "CLOUDSCALE_QUEUE_LOCK_SECONDS" in result.stderr


class FailingAfterFirst:
    """The real embedded browser, whose events queue 'fails' after one replayed message."""

    def __init__(self, inner: DeadLetterBrowser) -> None:
        self.inner = inner

    async def list(self, limit: int) -> Sequence[DeadLetter]:
        return await self.inner.list(limit)

    async def get(self, dead_letter_id: str) -> DeadLetter | None:
        return await self.inner.get(dead_letter_id)

    async def replay(
        self, dead_letter_ids: Sequence[str] | None, on_progress: ProgressCallback | None = None
    ) -> ReplayResult:
        assert dead_letter_ids is not None
        await self.inner.replay(dead_letter_ids[:1], on_progress)
        raise PortError("the events queue is unavailable")

    async def remove(self, dead_letter_ids: Sequence[str]) -> int:
        return await self.inner.remove(dead_letter_ids)

    async def close(self) -> None:
        await self.inner.close()


def test_a_replay_that_fails_part_way_says_what_was_replayed(
    invoke: Invoke, queue_path: Path, ids: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class FailingContainer(Container):
        @cached_property
        def dead_letter_browser(self) -> DeadLetterBrowser:
            return FailingAfterFirst(super().dead_letter_browser)

    monkeypatch.setattr(dlq_module, "Container", FailingContainer)

    result = invoke("replay", ids["evt-1"], ids["evt-2"])

    assert result.exit_code == 1
    assert f"Replayed 1 message to queue 'events' before the failure: {ids['evt-1']}." in result.stdout
    assert "Error: the events queue is unavailable" in result.stderr
    dead_letters, _ = read(queue_path)
    assert {dead.message.message_id for dead in dead_letters} == {"evt-2", "evt-gone"}


# --- purge ---------------------------------------------------------------------------------------


def test_purge_says_how_many_and_deletes_nothing_on_no(invoke: Invoke, queue_path: Path, ids: dict[str, str]) -> None:
    result = invoke("purge", input="n\n")
    assert result.exit_code == 0, result.output
    assert "Delete 3 dead letters for good?" in result.output
    assert "Nothing was purged." in result.output
    assert len(read(queue_path)[0]) == 3


def test_purge_on_yes_deletes_every_dead_letter_and_no_queued_message(
    invoke: Invoke, queue_path: Path, ids: dict[str, str]
) -> None:
    result = invoke("purge", input="y\n")
    assert result.exit_code == 0, result.output
    assert "Purged 3 dead letters." in result.output
    dead_letters, waiting = read(queue_path)
    assert dead_letters == []
    assert [message.message_id for message in waiting] == ["evt-3", "evt-4"]


def test_purge_yes_does_not_ask(invoke: Invoke, queue_path: Path, ids: dict[str, str]) -> None:
    result = invoke("purge", "--yes")
    assert result.exit_code == 0, result.output
    assert "?" not in result.output
    assert read(queue_path)[0] == []
    assert invoke("purge", "--yes").output == "The dead-letter queue is empty: nothing to purge.\n"


def test_send_poison_queues_a_message_the_process_stage_cannot_decode(invoke: Invoke, queue_path: Path) -> None:
    result = invoke("send-poison")
    assert result.exit_code == 0, result.output
    [*_, poison] = read(queue_path)[1]
    assert poison.message_id.startswith("poison/")
    assert poison.message_id in result.output
    with pytest.raises(PoisonMessageError) as refused:
        decode_envelope(poison.body)
    assert refused.value.reason == UNDECODABLE


def test_send_poison_refuses_the_azure_backend(invoke: Invoke) -> None:
    azure = {
        "CLOUDSCALE_BACKEND": "azure",
        "ServiceBusConnection__fullyQualifiedNamespace": "cs-test.servicebus.windows.net",
        "CLOUDSCALE_RATE_LIMIT_TABLE_ENDPOINT": "https://cstest.table.core.windows.net",
        "CosmosDBConnection__accountEndpoint": "https://cs-test.documents.azure.com:443/",
    }
    result = invoke("send-poison", env=azure)
    assert result.exit_code == 1
    assert "embedded queue only" in result.output
