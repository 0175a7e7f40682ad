"""`cloudscale export` against a real embedded event store in a data folder, as an operator runs it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from cloudscale_local.cli.main import main
from shared.adapters.event_store.embedded_event_store import EVENTS_FILE, EmbeddedEventStore
from shared.adapters.event_store.test_event_store_contract import stored_event
from shared.domain.stored_event import StoredEvent

Invoke = Callable[..., Result]

# user-7 in acme (saved newest first), and what must never be in its export
MINE = [stored_event(n, userId="user-7", timestamp=f"2025-03-01T12:00:{n:02d}+00:00") for n in (3, 2, 1)]
OTHERS = [
    stored_event(4, userId="user-8"),
    stored_event(5, tenant="globex", userId="user-7"),
    stored_event(6, userId=None, anonymousId="user-7"),
]


def seed(data_dir: Path, events: list[StoredEvent]) -> None:
    async def save() -> None:
        store = EmbeddedEventStore(data_dir / EVENTS_FILE)
        try:
            await store.save_many(events)
        finally:
            await store.close()

    asyncio.run(save())


@pytest.fixture
def invoke(tmp_path: Path) -> Invoke:
    runner = CliRunner()

    def run(*args: str, data_dir: Path = tmp_path) -> Result:
        environment = {"CLOUDSCALE_BACKEND": "embedded", "CLOUDSCALE_DATA_DIR": str(data_dir)}
        result = runner.invoke(main, ["export", *args], env=environment)
        # Failures must be messages, never tracebacks.
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result

    return run


def lines(data: bytes) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in data.splitlines()]


def test_a_users_events_go_to_stdout_as_json_lines_oldest_first(tmp_path: Path, invoke: Invoke) -> None:
    seed(tmp_path, [*MINE, *OTHERS])

    result = invoke("--tenant", "acme", "--user", "user-7")

    assert result.exit_code == 0, result.output
    assert lines(result.stdout_bytes) == [event.to_document() for event in reversed(MINE)]
    assert result.stdout_bytes.count(b"\n") == 3
    assert "exported 3 events" in result.stderr


def test_an_export_to_a_file_holds_only_that_anonymous_ids_events(tmp_path: Path, invoke: Invoke) -> None:
    seed(tmp_path, [*MINE, *OTHERS])
    output = tmp_path / "out" / "export.jsonl"
    output.parent.mkdir()

    result = invoke("--tenant", "acme", "--anonymous-id", "user-7", "--output", str(output))

    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == b""
    assert lines(output.read_bytes()) == [OTHERS[2].to_document()]
    assert list(output.parent.iterdir()) == [output]  # no partial file left beside it
    assert f"exported 1 event to {output}" in result.stderr


def test_an_empty_export_says_so_and_succeeds(tmp_path: Path, invoke: Invoke) -> None:
    seed(tmp_path, OTHERS)

    result = invoke("--tenant", "acme", "--user", "user-7")

    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == b""
    assert "no stored events of that user in tenant acme" in result.stderr


def test_exactly_one_identifier_is_asked_for(invoke: Invoke) -> None:
    both = invoke("--tenant", "acme", "--user", "u", "--anonymous-id", "a")
    neither = invoke("--tenant", "acme")

    for result in (both, neither):
        assert result.exit_code == 2
        assert "exactly one of --user or --anonymous-id" in result.stderr


def test_a_store_that_cannot_be_opened_is_a_one_line_error(tmp_path: Path, invoke: Invoke) -> None:
    # Where the data folder should be there is a file: the store cannot be created under it.
    blocked = tmp_path / "blocked"
    blocked.write_text("not a folder")
    output = tmp_path / "export.jsonl"

    result = invoke("--tenant", "acme", "--user", "user-7", "--output", str(output), data_dir=blocked)

    assert result.exit_code == 1
    [message] = result.stderr.splitlines()
    assert message.startswith("Error: the event store could not be read:")
    assert not output.exists()
    assert list(tmp_path.iterdir()) == [blocked]
