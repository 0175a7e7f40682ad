"""`cloudscale query` and `cloudscale report`: SQL over the local analytics store.

The embedded analytics store is a SQLite file (`analytics.sqlite3` under
`CLOUDSCALE_DATA_DIR`) with one table, `events`, whose columns are Data Explorer's (see
`shared/domain/analytics.py`). Both commands open it read-only, so they run beside a live
`cloudscale run` and can never change it nor write any other file (`cloudscale_local/cli/read_only_sql.py`).
On Azure the same questions are asked in KQL (README, "Analytics").
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from cloudscale_local.cli.read_only_sql import READ_ONLY_MESSAGE, open_read_only, refused_as_a_write
from cloudscale_local.cli.result_format import FORMATS, OutputFormat, print_result
from shared.adapters.analytics.embedded_analytics import ANALYTICS_FILE, time_text
from shared.bootstrap import Container
from shared.settings import Settings, SettingsError, load_settings

__all__ = ["query", "report"]

LAG_PERCENTILES = (50, 90, 99)


@click.command()
@click.argument("sql")
@click.option(
    "--format",
    "output",
    type=click.Choice(FORMATS),
    help=(
        "table (the default: vertical when the columns cannot fit the terminal), vertical "
        "(one `column: value` line each, record by record), csv, tsv (with a header row) or json."
    ),
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json: a JSON array of row objects.")
@click.pass_context
def query(context: click.Context, sql: str, output: OutputFormat | None, as_json: bool) -> None:
    """Run SQL (read-only) against the local analytics store; the table is `events`."""
    if as_json and output not in (None, "json"):
        raise click.UsageError(f"--json is --format json; it cannot go with --format {output}")
    with _analytics() as connection:
        try:
            cursor = connection.execute(sql)
            rows = cursor.fetchall()
        except sqlite3.Error as exc:
            if refused_as_a_write(exc):
                raise click.ClickException(f"the query failed: {exc}; {READ_ONLY_MESSAGE}") from None
            raise click.ClickException(f"the query failed: {exc}") from None
        columns = [column[0] for column in cursor.description or ()]
    width = context.terminal_width or shutil.get_terminal_size().columns
    print_result("json" if as_json else output or "table", columns, rows, width)


@click.command()
@click.option("--minutes", default=60, show_default=True, type=click.IntRange(min=1), help="How far back to look.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def report(minutes: int, as_json: bool) -> None:
    """Events per type per minute, suspicious events by rule, top tenants, and freshness."""
    since = time_text(datetime.now(UTC) - timedelta(minutes=minutes))
    with _analytics() as connection:
        sections: dict[str, list[dict[str, Any]] | dict[str, Any]] = {
            "eventsPerTypePerMinute": _rows(
                connection,
                "SELECT substr(ReceivedAt, 1, 16) AS minute, EventType AS eventType, count(*) AS events"
                " FROM events WHERE ReceivedAt >= ? GROUP BY 1, 2 ORDER BY 1, 2",
                since,
            ),
            "suspiciousByRule": _rows(
                connection,
                "SELECT reason.value AS reasonCode, count(*) AS events"
                " FROM events, json_each(events.FraudReasons) AS reason"
                " WHERE events.ReceivedAt >= ? GROUP BY 1 ORDER BY 2 DESC, 1",
                since,
            ),
            "topTenants": _rows(
                connection,
                "SELECT TenantId AS tenantId, count(*) AS events, sum(Suspicious) AS suspicious"
                " FROM events WHERE ReceivedAt >= ? GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
                since,
            ),
            "ingestToAnalyticsLagSeconds": _lag_percentiles(connection, since),
        }
    if as_json:
        click.echo(orjson.dumps({"sinceMinutes": minutes, **sections}).decode())
        return
    click.echo(f"Last {minutes} minutes (received at or after {since})")
    titles = {
        "eventsPerTypePerMinute": "Events per type per minute",
        "suspiciousByRule": "Suspicious events by rule",
        "topTenants": "Top tenants",
        "ingestToAnalyticsLagSeconds": "Ingest-to-analytics lag (seconds, received -> in analytics)",
    }
    for key, title in titles.items():
        section = sections[key]
        rows: list[dict[str, Any]] = [section] if isinstance(section, dict) else list(section)
        columns = list(rows[0]) if rows else []
        _print_table(title, columns, [tuple(row.values()) for row in rows])


def _rows(connection: sqlite3.Connection, sql: str, *parameters: Any) -> list[dict[str, Any]]:
    cursor = connection.execute(sql, parameters)
    columns = [column[0] for column in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _lag_percentiles(connection: sqlite3.Connection, since: str) -> dict[str, Any]:
    lags = sorted(
        row[0]
        for row in connection.execute(
            "SELECT (julianday(AnalyticsAt) - julianday(ReceivedAt)) * 86400.0 FROM events WHERE ReceivedAt >= ?",
            (since,),
        )
        if row[0] is not None
    )
    summary: dict[str, Any] = {"events": len(lags)}
    for percentile in LAG_PERCENTILES:
        summary[f"p{percentile}"] = _percentile(lags, percentile)
    summary["max"] = round(lags[-1], 3) if lags else None
    return summary


def _percentile(ordered: Sequence[float], percentile: int) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not ordered:
        return None
    rank = max(1, -(-percentile * len(ordered) // 100))  # ceil(p/100 * n), at least 1
    return round(ordered[rank - 1], 3)


@contextlib.contextmanager
def _analytics() -> Iterator[sqlite3.Connection]:
    container = Container(_settings())
    if not container.is_embedded:
        raise click.ClickException(
            "query and report read the embedded analytics store; on Azure, query Data Explorer "
            "(the README shows the KQL for each report)"
        )
    path = container.data_dir / ANALYTICS_FILE
    if not path.exists():
        raise click.ClickException(
            f"no analytics store at {path}: start the pipeline with `cloudscale run` (and send events), "
            "or set CLOUDSCALE_DATA_DIR to where it keeps its data"
        )
    connection = _open_read_only(path)
    try:
        yield connection
    finally:
        connection.close()


def _open_read_only(path: Path) -> sqlite3.Connection:
    # Nothing a query says can change the store or write any other file (`read_only_sql`).
    try:
        return open_read_only(path)
    except sqlite3.Error as exc:
        raise click.ClickException(f"cannot open {path}: {exc}") from None


def _settings() -> Settings:
    try:
        return load_settings(os.environ)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def _print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    console = Console()
    if not columns:
        if title:
            console.print(title)
        console.print("(no rows)")
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row))
    console.print(table)
    if not rows:
        console.print("(no rows)")
