"""The Data Explorer schema script against the Python row: they must not drift apart.

`changefeed/kusto/events.kql` defines the `Events` table and its JSON mapping;
`shared.domain.analytics` defines the row and its columns. These tests read the script the
way `kusto-setup` sends it (`events_commands`) and compare.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.analytics.kusto_schema import (
    EVENTS_MAPPING,
    EVENTS_TABLE,
    EVENTS_VIEW,
    events_commands,
    events_script_path,
    split_commands,
)
from shared.adapters.analytics.kusto_sink import multijson_body
from shared.domain.analytics import ANALYTICS_COLUMNS, AnalyticsRow

REPO = Path(__file__).resolve().parents[3]


def the_command(prefix: str) -> str:
    [command] = [command for command in events_commands() if command.startswith(prefix)]
    return command


def table_columns() -> list[tuple[str, str]]:
    command = the_command(f".create-merge table {EVENTS_TABLE} ")
    inside = command[command.index("(") + 1 : command.index(")")]
    return [(name, kind) for name, kind in re.findall(r"(\w+)\s*:\s*(\w+)", inside)]


def mapping_entries() -> list[dict[str, Any]]:
    command = the_command(f'.create-or-alter table {EVENTS_TABLE} ingestion json mapping "{EVENTS_MAPPING}"')
    # The mapping is adjacent string literals, one per line, which Kusto concatenates.
    literals = re.findall(r"^'(.*)'$", command, flags=re.MULTILINE)
    entries: list[dict[str, Any]] = json.loads("".join(literals))
    return entries


def sample_row(**changes: Any) -> AnalyticsRow:
    moment = datetime(2025, 3, 1, 12, 0, 1, 250_000, tzinfo=UTC)
    fields: dict[str, Any] = {
        "event_id": "5b0f7c1e-6f1e-4a8e-9d55-0c6b7c0f4b11",
        "tenant_id": "acme",
        "event_type": "purchase",
        "timestamp": moment,
        "received_at": moment,
        "processed_at": moment,
        "stored_at": moment,
        "correlation_id": "corr-1",
        "user_id": "user-7",
        "session_id": "s-1",
        "url": "/checkout",
        "client_network": "203.0.113.0/24",
        "browser": "Firefox",
        "os": "Linux",
        "device": "Other",
        "is_bot": False,
        "fraud_score": 0.8,
        "suspicious": True,
        "fraud_reasons": ("VELOCITY_IP_MINUTE",),
        "properties": {"amount": 49.9, "items": [{"sku": "A-1"}]},
    }
    fields.update(changes)
    return AnalyticsRow(**fields)


# --- the script and the Python row -----------------------------------------------------------


def test_the_table_has_exactly_the_analytics_columns_in_order() -> None:
    assert table_columns() == list(ANALYTICS_COLUMNS)


def test_the_mapping_reads_every_column_from_its_own_json_property() -> None:
    entries = mapping_entries()

    assert [entry["column"] for entry in entries] == [name for name, _ in ANALYTICS_COLUMNS]
    for entry in entries:
        assert entry["Properties"] == {"Path": f"$.{entry['column']}"}


def test_a_row_serialises_to_one_json_object_with_every_mapped_column() -> None:
    row = sample_row()

    document = row.to_json_dict()

    assert list(document) == [name for name, _ in ANALYTICS_COLUMNS]
    for entry in mapping_entries():
        assert entry["Properties"]["Path"].removeprefix("$.") in document
    assert document["EventId"] == row.event_id
    assert document["StoredAt"] == "2025-03-01T12:00:01.250000Z"
    assert document["FraudReasons"] == ["VELOCITY_IP_MINUTE"]
    assert document["Properties"] == {"amount": 49.9, "items": [{"sku": "A-1"}]}


@pytest.mark.parametrize(
    "row",
    [
        sample_row(),
        sample_row(correlation_id=None, browser=None, properties=None),
        sample_row(
            anonymous_id="anon-1",
            name="Signed Up",
            traits={"plan": "pro"},
            context={"library": {"name": "analytics-python"}},
            original_timestamp=datetime(2025, 3, 1, 12, 0, tzinfo=UTC),
            sent_at=datetime(2025, 3, 1, 12, 0, 1, tzinfo=UTC),
        ),
    ],
)
def test_every_value_has_the_json_type_its_column_type_ingests_from(row: AnalyticsRow) -> None:
    document = row.to_json_dict()
    # The event's own optional times are JSON null when absent; Data Explorer ingests that as an empty datetime.
    optional_times = {"OriginalTimestamp", "SentAt"}
    accepts: dict[str, tuple[type, ...]] = {
        "string": (str, type(None)),
        "datetime": (str,),
        "bool": (bool,),
        "real": (float, int),
        "dynamic": (list, dict, type(None)),
    }

    for name, kind in ANALYTICS_COLUMNS:
        if name in optional_times and document[name] is None:
            continue
        assert isinstance(document[name], accepts[kind]), (name, kind, document[name])
        if kind == "datetime":
            assert document[name].endswith("Z")
            datetime.fromisoformat(document[name])


def test_the_ingestion_body_is_one_json_line_per_row() -> None:
    rows = [sample_row(event_id=f"id-{n}") for n in range(3)]

    lines = multijson_body(rows).split(b"\n")

    assert [json.loads(line) for line in lines] == [row.to_json_dict() for row in rows]


# --- the rest of the script ----------------------------------------------------------------


def test_the_commands_run_in_dependency_order() -> None:
    verbs = [command.split("\n", 1)[0] for command in events_commands()]

    assert verbs[0].startswith(f".create-merge table {EVENTS_TABLE} ")
    assert verbs[1].startswith(f".create-or-alter table {EVENTS_TABLE} ingestion json mapping")
    assert any("materialized-view" in verb for verb in verbs[2:])


def test_streaming_ingestion_is_enabled_on_the_table() -> None:
    assert f".alter table {EVENTS_TABLE} policy streamingingestion enable" in events_commands()


def test_the_raw_table_keeps_rows_30_days() -> None:
    assert f".alter-merge table {EVENTS_TABLE} policy retention softdelete = 30d" in events_commands()


def view_properties() -> dict[str, str]:
    """The view's `with (name = value, ...)` properties, quoted strings kept whole."""
    command = the_command(".create async ifnotexists materialized-view")
    header = command.partition("{")[0]
    inside = header[header.index("with (") + len("with (") :]
    return dict(re.findall(r'(\w+)\s*=\s*("[^"]*"|[^,\s)]+)', inside.partition(")")[0]))


def test_the_view_keeps_the_latest_row_per_tenant_and_event_id() -> None:
    # Two tenants' events with one eventId are two events: keyed on EventId alone, the view
    # would show one of them.
    command = the_command(".create async ifnotexists materialized-view")
    header, _, query = command.partition("{")

    assert view_properties()["backfill"] == "true"
    assert header.rstrip().endswith(f"{EVENTS_VIEW} on table {EVENTS_TABLE}")
    assert " ".join(query.rstrip().removesuffix("}").split()) == (
        f"{EVENTS_TABLE} | summarize arg_max(StoredAt, *) by TenantId, EventId"
    )


def test_the_view_follows_columns_added_to_the_table_later() -> None:
    # Data Explorer disables an arg_max(Timestamp, *) view whose source table gained a column,
    # unless the view was created with autoUpdateSchema, which it accepts only for
    # arg_max(Timestamp, *), arg_min(Timestamp, *) and take_any(*) views.
    command = the_command(".create async ifnotexists materialized-view")
    query = " ".join(command.partition("{")[2].split())

    assert view_properties()["autoUpdateSchema"] == "true"
    assert re.search(r"summarize (arg_max|arg_min)\(\w+, \*\) by |summarize take_any\(\*\) by ", query)


def test_autoupdateschema_is_safe_because_no_command_drops_a_column() -> None:
    # autoUpdateSchema carries a dropped source column's removal into the view, data and all:
    # the script must never drop one. `.create-merge table` only adds columns; `.drop column`
    # and `.alter table T (...)` (which replaces the column list) would drop them.
    for command in events_commands():
        assert ".drop" not in command
        if command.startswith((".alter table", ".alter-merge table")):
            assert " policy " in command, command


def test_every_command_creates_or_merges_and_none_drops() -> None:
    for command in events_commands():
        first_word = command.split()[0]
        assert first_word in {".create-merge", ".create-or-alter", ".alter", ".alter-merge", ".create"}
        assert ".drop" not in command


# --- loading and splitting -------------------------------------------------------------------


def test_the_script_lives_in_the_changefeed_package() -> None:
    assert events_script_path() == REPO / "changefeed" / "kusto" / "events.kql"


def test_loading_the_script_does_not_import_the_function_app() -> None:
    # A fresh interpreter: in this one another test may already have imported `changefeed`.
    code = (
        "import sys\n"
        "from shared.adapters.analytics.kusto_schema import events_commands\n"
        "assert events_commands()\n"
        "assert 'changefeed' not in sys.modules, 'changefeed was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_commands_are_split_at_blank_lines_and_comments_dropped() -> None:
    script = (
        "// header\n"
        "\n"
        "// about the table\n"
        ".create-merge table T (\n"
        "    a: string\n"
        ")\n"
        "\n"
        "\n"
        ".alter table T policy streamingingestion enable\n"
        "// trailing comment\n"
    )

    assert split_commands(script) == (
        ".create-merge table T (\n    a: string\n)",
        ".alter table T policy streamingingestion enable",
    )


def test_a_block_that_is_not_a_control_command_is_refused() -> None:
    with pytest.raises(ValueError, match=r"T \| take 10"):
        split_commands(".alter table T policy streamingingestion enable\n\nT | take 10\n")
