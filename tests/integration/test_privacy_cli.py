"""`cloudscale erase`, `erasures` and `suppressions` against real embedded stores, as an operator runs them."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from cloudscale_local.cli.main import main
from shared.bootstrap import Container
from shared.domain.privacy import ERASURE_STEPS, Subject
from shared.settings import load_settings
from tests.integration.test_erasure_runner import envelope, stored_event

Invoke = Callable[..., Result]
USER = "user-cli"


def environment(data_dir: Path) -> dict[str, str]:
    return {"CLOUDSCALE_DATA_DIR": str(data_dir), "CLOUDSCALE_SUPPRESSION_CACHE_SECONDS": "0.05"}


def on_container(data_dir: Path, action: Callable[[Container], object]) -> object:
    async def run() -> object:
        container = Container(load_settings(environment(data_dir)))
        try:
            return await action(container)  # type: ignore[misc]
        finally:
            await container.close()

    return asyncio.run(run())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Two events of USER and one of another user, and a dead letter of USER."""

    async def seed(container: Container) -> None:
        for n, user in ((1, USER), (2, USER), (3, "user-kept")):
            await container.event_store.save(stored_event(n, user_id=user))
        await container.embedded_queue.park(envelope(9, USER), "ProcessingFailed", "test")

    on_container(tmp_path, seed)
    return tmp_path


@pytest.fixture
def invoke(data_dir: Path) -> Invoke:
    def run(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=environment(data_dir))

    return run


def erasure_id(output: str) -> str:
    found = re.search(r"erasure (er_[A-Za-z0-9_-]{20})", output)
    assert found, output
    return found.group(1)


def test_erase_prints_each_step_then_the_counts_and_the_user_is_gone(invoke: Invoke, data_dir: Path) -> None:
    result = invoke("erase", "--tenant", "acme", "--user", USER)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines[1:-1]] == list(ERASURE_STEPS)
    assert re.search(r"events\s+found 2, removed 2", result.output)
    assert re.search(r"dead_letters\s+found 1, removed 1", result.output)
    assert "removed event store 2, analytics 0, dead letters 1" in lines[-1]
    assert USER not in result.output
    left = on_container(data_dir, lambda c: c.event_store.count_subject_events(Subject("acme", "userId", USER)))
    assert left == 0
    kept = on_container(data_dir, lambda c: c.event_store.get("acme", str(uuid.UUID(int=3))))
    assert kept is not None


def test_erasures_list_and_show_follow_an_erasure_without_naming_the_user(invoke: Invoke) -> None:
    ran = invoke("erase", "--tenant", "acme", "--user", USER)
    identifier = erasure_id(ran.output)

    listed = invoke("erasures", "list")
    shown = invoke("erasures", "show", identifier, "--json")
    table = invoke("erasures", "show", identifier)

    assert listed.exit_code == 0, listed.output
    assert identifier in listed.output
    assert "finished" in listed.output
    status = orjson.loads(shown.output)
    assert status["status"] == "finished"
    assert status["steps"]["events"] == {"found": 2, "removed": 2, "done": True}
    assert USER not in shown.output
    assert re.search(r"events\s+found 2, removed 2", table.output)


def test_an_unknown_erasure_is_a_one_line_error(invoke: Invoke) -> None:
    result = invoke("erasures", "show", "er_" + "x" * 20)

    assert result.exit_code == 1
    assert result.output.strip() == f"Error: there is no erasure er_{'x' * 20}"


def test_resume_refuses_an_erasure_another_runner_holds_and_finishes_one_it_may_take(
    invoke: Invoke, data_dir: Path
) -> None:
    # GIVEN an erasure recorded (as over HTTP) whose lease another runner holds for a while
    async def record(container: Container) -> str:
        from shared.assembly import build_erasure_runner

        request = await build_erasure_runner(container).request(Subject("acme", "userId", USER))
        await container.privacy_store.replace_erasure(
            replace(request, lease_owner="timer", lease_until=datetime.now(UTC) + timedelta(minutes=5))
        )
        return request.id

    identifier = str(on_container(data_dir, record))

    busy = invoke("erasures", "resume", identifier)
    assert busy.exit_code == 1
    assert "is being run by timer" in busy.output
    assert "cloudscale erasures show ID" in busy.output

    # WHEN the lease is given up THEN resume finishes it
    async def release(container: Container) -> None:
        current = await container.privacy_store.get_erasure(identifier)
        assert current is not None
        await container.privacy_store.replace_erasure(replace(current, lease_owner=None, lease_until=None))

    on_container(data_dir, release)
    resumed = invoke("erasures", "resume", identifier)
    assert resumed.exit_code == 0, resumed.output
    assert f"erasure {identifier} finished" in resumed.output


def test_suppressions_are_listed_by_hash_and_lifting_one_makes_it_delete_only(invoke: Invoke, data_dir: Path) -> None:
    invoke("erase", "--tenant", "acme", "--user", USER)

    listed = invoke("suppressions", "list", "--tenant", "acme")
    lifted = invoke("suppressions", "lift", "--tenant", "acme", "--user", USER)
    after = invoke("suppressions", "list", "--tenant", "acme", "--json")
    nothing = invoke("suppressions", "lift", "--tenant", "acme", "--anonymous-id", "never-erased")

    assert listed.exit_code == 0, listed.output
    assert re.search(r"^[0-9a-f]{12}\s+userId\s+suppress\s", listed.output.splitlines()[1])
    assert USER not in listed.output
    assert lifted.exit_code == 0, lifted.output
    [suppression] = orjson.loads(after.output)
    assert suppression["mode"] == "delete"
    assert suppression["liftedAt"] is not None
    assert nothing.exit_code == 1
    assert "has no suppression for this anonymousId" in nothing.output


def test_erase_delete_only_writes_a_delete_tombstone(invoke: Invoke) -> None:
    result = invoke("erase", "--tenant", "acme", "--user", USER, "--delete-only", "--json")

    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output)["mode"] == "delete"
    listed = invoke("suppressions", "list", "--tenant", "acme")
    assert " delete " in listed.output


def test_the_subject_is_one_identifier(invoke: Invoke) -> None:
    both = invoke("erase", "--tenant", "acme", "--user", "a", "--anonymous-id", "b")
    neither = invoke("erase", "--tenant", "acme")

    assert both.exit_code == 2
    assert "exactly one of --user and --anonymous-id" in both.output
    assert neither.exit_code == 2


def test_a_store_that_cannot_be_opened_is_a_one_line_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")

    result = CliRunner().invoke(
        main, ["erase", "--tenant", "acme", "--user", USER], env={"CLOUDSCALE_DATA_DIR": str(not_a_folder)}
    )

    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output
