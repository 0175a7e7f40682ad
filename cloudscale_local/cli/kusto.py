"""`cloudscale kusto-setup`: apply the Data Explorer schema (`changefeed/kusto/events.kql`).

Creates or updates, in `CLOUDSCALE_KUSTO_DATABASE` on `CLOUDSCALE_KUSTO_CLUSTER_URI`: the
`Events` table, its JSON ingestion mapping, its streaming-ingestion and retention policies,
and the `EventsDedup` materialized view. Every command creates or merges and none drops, so
running it again is safe, and is how a schema change is rolled out.

Command by command (`KustoClient.execute_mgmt` per command), not one `.execute database
script`: each command's outcome is printed as it happens, a failure names the command that
failed and stops there, and the view's `.create async` returns an operation id to follow
(async commands are not what a database script is for). Neither way is transactional, so
nothing is lost by not batching: the commands are idempotent and a rerun finishes the job.

Authenticates with `DefaultAzureCredential` (your `az login` locally, a managed identity in
a pipeline); the identity needs Database Admin on the database (the materialized view
requires it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import click

from shared.adapters.analytics.kusto_schema import events_commands, events_script_path
from shared.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from azure.kusto.data import KustoClient
    from azure.kusto.data.response import KustoResponseDataSet

    from shared.adapters.analytics.kusto_sink import KustoCredential

__all__ = ["apply_commands", "kusto_setup", "make_credential"]

Echo = Callable[[str], None]


def make_credential() -> KustoCredential:
    """The credential `kusto-setup` authenticates with: `DefaultAzureCredential` (tests replace this)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


@click.command("kusto-setup")
@click.option("--dry-run", is_flag=True, help="Print the commands and connect to nothing.")
def kusto_setup(dry_run: bool) -> None:
    """Create or update the Data Explorer tables, mapping, policies and view.

    Applies changefeed/kusto/events.kql to CLOUDSCALE_KUSTO_DATABASE on
    CLOUDSCALE_KUSTO_CLUSTER_URI, one command at a time; safe to run again.
    """
    settings = _settings()
    try:
        commands = events_commands()
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read the schema script: {exc}") from None
    if dry_run:
        _print_script(settings, commands)
        return
    # Imported here: the Kusto SDK is only needed when something is sent.
    from azure.kusto.data import KustoClient

    from shared.adapters.analytics.kusto_sink import kusto_connection, kusto_endpoints

    try:
        engine = kusto_endpoints(settings).engine
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Applying {len(commands)} commands to database {settings.kusto_database!r} on {engine}")
    client = KustoClient(kusto_connection(engine, make_credential()))
    try:
        applied = apply_commands(client, settings.kusto_database, commands, click.echo)
    finally:
        # Closes the credential too. The SDK leaves `close` unannotated.
        client.close()  # type: ignore[no-untyped-call]
    if applied < len(commands):
        raise click.ClickException(
            f"stopped at command {applied + 1} of {len(commands)}; the ones before it were applied. "
            "Fix the cause and run kusto-setup again (every command is safe to repeat)."
        )
    click.echo("Done.")


def apply_commands(client: KustoClient, database: str, commands: Sequence[str], echo: Echo) -> int:
    """Run `commands` in order, printing each outcome; stop at the first failure.

    Returns how many succeeded (all of them, unless one failed).
    """
    from azure.kusto.data.exceptions import KustoError

    for number, command in enumerate(commands, start=1):
        echo(f"[{number}/{len(commands)}] {_headline(command)}")
        try:
            response = client.execute_mgmt(database, command)
        except KustoError as exc:
            echo(f"    failed: {type(exc).__name__}: {_first_line(str(exc))}")
            return number - 1
        echo(f"    {_outcome(response)}")
    return len(commands)


def _outcome(response: KustoResponseDataSet) -> str:
    """`ok`, or for an async command the operation to follow (`.show operations <id>`)."""
    for table in response.primary_results:
        if table.rows and any(column.column_name == "OperationId" for column in table.columns):
            operation = table.rows[0]["OperationId"]
            return f"ok: started operation {operation} (follow it with `.show operations {operation}`)"
    return "ok"


def _print_script(settings: Settings, commands: Sequence[str]) -> None:
    target = settings.kusto_cluster_uri or "CLOUDSCALE_KUSTO_CLUSTER_URI (not set)"
    click.echo(f"// Dry run: nothing is sent. From {events_script_path()}")
    click.echo(f"// {len(commands)} commands for database {settings.kusto_database!r} on {target}, in this order:")
    for command in commands:
        click.echo("")
        click.echo(command)


def _headline(command: str) -> str:
    """The command's first line, enough to recognise it."""
    return _first_line(command)


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= 160 else line[:157] + "..."


def _settings() -> Settings:
    try:
        return load_settings(os.environ)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
