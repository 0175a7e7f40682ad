"""`cloudscale kusto-setup`: the dry run, and the real run against a local Data Explorer endpoint
that records the management commands it receives (`tests/integration/kusto_server.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

import cloudscale_local.cli.kusto as kusto_cli
from cloudscale_local.cli.main import main
from shared.adapters.analytics.kusto_schema import events_commands
from tests.integration.kusto_server import KustoServer, StaticTokenCredential, kusto_error, run_kusto_server

DATABASE = "cloudscale-tests"


@pytest.fixture
def kusto() -> Iterator[KustoServer]:
    with run_kusto_server() as server:
        yield server


@pytest.fixture
def credential(monkeypatch: pytest.MonkeyPatch) -> StaticTokenCredential:
    """Replaces DefaultAzureCredential: no identity endpoint is asked for anything."""
    credential = StaticTokenCredential()
    monkeypatch.setattr(kusto_cli, "make_credential", lambda: credential)
    return credential


def setup(*args: str, cluster: str | None = None) -> Result:
    env = {"CLOUDSCALE_KUSTO_DATABASE": DATABASE, "CLOUDSCALE_KUSTO_CLUSTER_URI": cluster}
    return CliRunner().invoke(main, ["kusto-setup", *args], env=env)


def test_a_dry_run_prints_every_command_in_order_and_connects_nothing(credential: StaticTokenCredential) -> None:
    result = setup("--dry-run")

    assert result.exit_code == 0, result.output
    assert f"database '{DATABASE}'" in result.output
    body = result.output[result.output.index("\n\n") :]
    assert body.strip() == "\n\n".join(events_commands())
    assert credential.scopes == []


def test_a_dry_run_needs_no_cluster_uri() -> None:
    result = setup("--dry-run")

    assert result.exit_code == 0, result.output
    assert "CLOUDSCALE_KUSTO_CLUSTER_URI (not set)" in result.output


def test_setup_sends_each_command_to_the_database_in_order(
    kusto: KustoServer, credential: StaticTokenCredential
) -> None:
    result = setup(cluster=kusto.url)

    assert result.exit_code == 0, result.output
    assert [(command.database, command.command) for command in kusto.commands] == [
        (DATABASE, command) for command in events_commands()
    ]
    assert all(command.headers["authorization"] == f"Bearer {credential.token}" for command in kusto.commands)
    assert kusto.ingests == []
    assert credential.closed >= 1


def test_setup_prints_each_outcome_and_the_views_operation(
    kusto: KustoServer, credential: StaticTokenCredential
) -> None:
    result = setup(cluster=kusto.url)

    commands = events_commands()
    assert result.exit_code == 0, result.output
    assert f"Applying {len(commands)} commands to database '{DATABASE}' on {kusto.url}" in result.output
    for number, command in enumerate(commands, start=1):
        assert f"[{number}/{len(commands)}] {command.splitlines()[0]}" in result.output
    assert result.output.count("    ok") == len(commands)
    assert "started operation 7b5d3e3a-0000-4000-8000-000000000001" in result.output
    assert result.output.rstrip().endswith("Done.")


def test_setup_stops_at_the_first_failing_command(kusto: KustoServer, credential: StaticTokenCredential) -> None:
    kusto.mgmt_reply = kusto_error(403, "Forbidden", "principal is not a database admin", permanent=True)
    kusto.fail_command_containing = "policy streamingingestion"
    commands = events_commands()
    failing = next(n for n, command in enumerate(commands) if "policy streamingingestion" in command)

    result = setup(cluster=kusto.url)

    assert result.exit_code == 1
    assert "failed: KustoApiError: principal is not a database admin" in result.output
    assert f"stopped at command {failing + 1} of {len(commands)}" in result.output
    assert [command.command for command in kusto.commands] == list(commands[: failing + 1])


def test_setup_without_a_cluster_uri_names_the_setting(credential: StaticTokenCredential) -> None:
    result = setup()

    assert result.exit_code == 1
    assert "CLOUDSCALE_KUSTO_CLUSTER_URI is required" in result.output
