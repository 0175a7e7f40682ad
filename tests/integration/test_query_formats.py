"""`cloudscale query --format`: each layout on a real analytics store, at a fixed terminal width.

The store is the one the embedded adapter writes (`analytics.sqlite3`, 29 columns), so
`SELECT * FROM events` is as wide as a user's.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cloudscale_local.cli.main import main
from shared.adapters.analytics.embedded_analytics import ANALYTICS_FILE, EmbeddedAnalyticsStore
from shared.domain.analytics import AnalyticsRow
from tests.analytics_store import analytics_row

MOMENT = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def row(n: int, **changes: Any) -> AnalyticsRow:
    return analytics_row(n, MOMENT, **changes)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose analytics store holds three events, one with a comma, a quote and a tab in its URL."""
    folder = tmp_path_factory.mktemp("data")

    async def create() -> None:
        store = EmbeddedAnalyticsStore(folder / ANALYTICS_FILE)
        await store.write([row(1), row(2, url='/a,b "c"\td', user_id="u2"), row(3, event_type="purchase")])
        await store.close()

    asyncio.run(create())
    return folder


def query(data_dir: Path, *args: str, width: int = 80) -> Result:
    environment = {"CLOUDSCALE_BACKEND": "embedded", "CLOUDSCALE_DATA_DIR": str(data_dir)}
    result = CliRunner().invoke(main, ["query", *args], env=environment, terminal_width=width)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def test_a_result_too_wide_for_the_terminal_is_printed_record_by_record(data_dir: Path) -> None:
    result = query(data_dir, "SELECT * FROM events ORDER BY EventId", width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert sum("1. row" in line for line in lines) == 1
    assert sum(". row " in line for line in lines) == 3
    record = lines[1 : lines.index(next(line for line in lines if "2. row" in line))]
    assert "EventId: 00000000-0000-4000-8000-000000000001" in [line.strip() for line in record], "values whole"
    assert "UserId: NULL" in [line.strip() for line in record]
    assert len({line.index(": ") for line in record}) == 1, "the names right-aligned"
    assert len(record) == 29, "one line per column"
    assert all(len(line) <= 80 for line in lines if "row ***" in line)
    assert not any("┃" in line or "│" in line for line in lines), "no squeezed table"


def test_a_result_that_fits_is_a_table_within_the_width(data_dir: Path) -> None:
    sql = "SELECT EventType, UserId, count(*) AS n FROM events GROUP BY 1, 2 ORDER BY 1, 2"
    result = query(data_dir, sql, width=60)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert all(len(line) <= 60 for line in lines)
    body = [line for line in lines if "page_view" in line or "purchase" in line]
    assert len(body) == 3
    assert "NULL" in body[0]
    assert "u2" in body[1]


def test_the_same_wide_result_is_a_table_on_a_wide_enough_terminal(data_dir: Path) -> None:
    result = query(data_dir, "SELECT * FROM events", width=1000)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "EventId" in line)
    assert "TenantId" in header, "one header line naming every column"
    assert "AnalyticsAt" in header


def test_vertical_is_chosen_even_when_the_table_would_fit(data_dir: Path) -> None:
    result = query(data_dir, "SELECT count(*) AS n FROM events", "--format", "vertical")
    assert result.output.splitlines()[1:] == ["n: 3"]


def test_csv_and_tsv_are_what_the_csv_module_reads_back(data_dir: Path) -> None:
    sql = "SELECT EventId, Url, UserId FROM events ORDER BY EventId"
    for output, delimiter in (("csv", ","), ("tsv", "\t")):
        result = query(data_dir, sql, "--format", output, width=20)
        assert result.exit_code == 0, result.output
        parsed = list(csv.reader(io.StringIO(result.output), delimiter=delimiter))
        assert parsed[0] == ["EventId", "Url", "UserId"]
        assert parsed[2] == ["00000000-0000-4000-8000-000000000002", '/a,b "c"\td', "u2"]
        assert parsed[1][2] == "", "NULL is an empty field"
        assert len(parsed) == 4


def test_json_and_its_json_alias_agree(data_dir: Path) -> None:
    sql = "SELECT EventId, UserId FROM events ORDER BY EventId"
    by_format = query(data_dir, sql, "--format", "json")
    by_flag = query(data_dir, sql, "--json")
    assert by_format.output == by_flag.output
    assert json.loads(by_flag.output)[0] == {"EventId": "00000000-0000-4000-8000-000000000001", "UserId": None}


def test_json_with_another_format_is_refused(data_dir: Path) -> None:
    result = query(data_dir, "SELECT 1", "--json", "--format", "csv")
    assert result.exit_code == 2
    assert "--json is --format json" in result.output


def test_an_empty_result_says_so_and_csv_keeps_its_header(data_dir: Path) -> None:
    sql = "SELECT EventId FROM events WHERE 0"
    assert query(data_dir, sql).output == "(no rows)\n"
    assert query(data_dir, sql, "--format", "csv").output == "EventId\n"
    assert query(data_dir, sql, "--format", "json").output == "[]\n"


def test_markup_like_values_are_printed_as_they_are(data_dir: Path) -> None:
    result = query(data_dir, "SELECT '[bold]x[/bold]' AS v, x'0a1b' AS b")
    assert "[bold]x[/bold]" in result.output
    assert "X'0A1B'" in result.output


@pytest.mark.parametrize("layout", ["table", "vertical"])
def test_control_characters_in_a_value_are_shown_escaped_never_sent_to_the_terminal(
    data_dir: Path, layout: str
) -> None:
    # An accepted event's text (a url, a userId) may hold terminal escapes: the layouts for people show them as text.
    sql = "SELECT char(27) || ']0;pwned' || char(7) || char(27) || '[2J' AS v"
    environment = {"CLOUDSCALE_BACKEND": "embedded", "CLOUDSCALE_DATA_DIR": str(data_dir)}
    result = CliRunner().invoke(main, ["query", sql, "--format", layout], env=environment, color=True)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    assert "\x07" not in result.output
    assert "]0;pwned" in result.output
