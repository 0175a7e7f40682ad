"""The CloudScale workbook: valid JSON once deployed, on the metrics, tables and columns the app
really writes, reading the Data Explorer database the template deploys.

Two tabs: "Service levels" (the SLO charts) and "Live events" (the local dashboard's questions:
the newest events from Data Explorer; rejections by reason, 429s by limit, fraud by rule and
analytics lag from Application Insights).
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import INFRA_DIR, REPO_ROOT, at, calls, infra_file, literal, text

WORKBOOK = "modules/workbook.bicep"
TELEMETRY = REPO_ROOT / "shared" / "telemetry.py"
SCHEMA = REPO_ROOT / "changefeed" / "kusto" / "events.kql"
# What Azure deploys (.funcignore leaves the local half out): where the metrics are recorded.
DEPLOYED_CODE = ("function_app.py", "ingest", "process", "changefeed", "shared")
APP_METRICS = (
    "cloudscale_events_ingested_total",
    "cloudscale_ingestion_duration_seconds",
    "cloudscale_fraud_detected_total",
    "cloudscale_rate_limit_rejections_total",
    "cloudscale_processing_duration_seconds",
)
LIVE_METRICS = (
    "cloudscale_events_rejected_total",
    "cloudscale_rate_limit_rejections_total",
    "cloudscale_fraud_detected_total",
    "cloudscale_analytics_lag_seconds",
)
EXAMPLE_VALUES = {
    "appInsightsId": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Insights/components/appi",
    "serviceBusNamespaceId": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ServiceBus/namespaces/sb",
    "kustoClusterUri": "https://adxcsdev.westeurope.kusto.windows.net",
    "kustoDatabaseName": "cloudscale",
}
# Columns of the classic `customMetrics` table, which Logs queries scoped to the Application
# Insights component read, workspace-based or not (docs/deploy.md, "How the workbook reads its data").
CUSTOM_METRICS_VALUE_COLUMNS = {"value", "valueCount", "valueSum", "valueMin", "valueMax"}
LOGS, ADX = 0, 9
QUERY, PARAMETERS, LINKS, GROUP = 3, 9, 11, 12


def content_file() -> Path:
    [[path]] = calls(infra_file(WORKBOOK).variables()["content"], "loadTextContent")
    relative: str = literal(path)
    return (INFRA_DIR / "modules" / relative).resolve()


def replacements() -> dict[str, str]:
    """Placeholder -> the parameter the Bicep puts in its place."""
    module = infra_file(WORKBOOK)
    found = calls(module.variables()["withMonitoring"], "replace")
    found += calls(at(module.resource("workbook").body, "properties", "serializedData"), "replace")
    return {literal(arguments[1]): text(arguments[2]) for arguments in found}


@functools.cache
def deployed_workbook() -> dict[str, Any]:
    content = content_file().read_text(encoding="utf-8")
    for placeholder, param in replacements().items():
        content = content.replace(placeholder, EXAMPLE_VALUES[param])
    workbook: dict[str, Any] = json.loads(content)
    return workbook


def items(within: list[dict[str, Any]] | None = None) -> Iterator[dict[str, Any]]:
    """Every item, those inside groups included, in the order they are shown."""
    for item in deployed_workbook()["items"] if within is None else within:
        yield item
        if item["type"] == GROUP:
            yield from items(item["content"]["items"])


def tab(view: str) -> list[dict[str, Any]]:
    """The items of the group the tab `view` shows."""
    [group] = [
        item
        for item in deployed_workbook()["items"]
        if item["type"] == GROUP and item.get("conditionalVisibility", {}).get("value") == view
    ]
    return list(items(group["content"]["items"]))


def queries(view: str, query_type: int) -> list[dict[str, Any]]:
    return [
        item["content"] for item in tab(view) if item["type"] == QUERY and item["content"]["queryType"] == query_type
    ]


def data_explorer_queries() -> list[dict[str, Any]]:
    """The Data Explorer queries: the item's `query` holds the query text, cluster and database."""
    found = [json.loads(item["content"]["query"]) for item in items() if item["content"].get("queryType") == ADX]
    assert found
    return found


def parameters(group: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        parameter["name"]: parameter
        for item in group
        if item["type"] == PARAMETERS
        for parameter in item["content"]["parameters"]
    }


def schema() -> tuple[set[str], set[str]]:
    """(tables and views, columns) the analytics schema script creates on Data Explorer."""
    script = SCHEMA.read_text(encoding="utf-8")
    [(table, column_list)] = re.findall(r"\.create-merge table (\w+) \((.*?)\) with", script, flags=re.DOTALL)
    views = re.findall(r"materialized-view\s.*?\s(\w+) on table " + table, script, flags=re.DOTALL)
    columns = set(re.findall(r"(\w+):\s*\w+", column_list))
    assert views == ["EventsDedup"]
    assert "ReceivedAt" in columns
    return {table, *views}, columns


def declared_metrics() -> dict[str, str]:
    """Metric name -> the attribute (or function) holding its instrument in shared/telemetry.py."""
    found: dict[str, str] = {}
    tree = ast.parse(TELEMETRY.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        holder: str
        value: ast.expr | None
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
            holder, value = node.targets[0].attr, node.value
        elif isinstance(node, ast.FunctionDef):
            returned = [statement.value for statement in node.body if isinstance(statement, ast.Return)]
            holder, value = node.name, returned[0] if returned else None
        else:
            continue
        if (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr.startswith("create_")
            and value.args
            and isinstance(value.args[0], ast.Constant)
        ):
            found[str(value.args[0].value)] = holder
    return found


def recorded_attributes(instrument: str) -> set[str]:
    """The attribute keys the deployed code records `instrument` with (literal dict keys only)."""
    keys: set[str] = set()
    paths = [REPO_ROOT / name for name in DEPLOYED_CODE]
    files = [path for path in paths if path.is_file()]
    files += [file for path in paths if path.is_dir() for file in path.rglob("*.py")]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("add", "record")
                and isinstance(node.func.value, ast.Attribute)
                # The instrument, or a component's private reference to it (`self._events_rejected`).
                and node.func.value.attr.lstrip("_") == instrument
            ):
                continue
            attributes = [*node.args[1:2], *(keyword.value for keyword in node.keywords if keyword.arg == "attributes")]
            for mapping in attributes:
                if isinstance(mapping, ast.Dict):
                    keys |= {str(key.value) for key in mapping.keys if isinstance(key, ast.Constant)}
    return keys


def outside_strings_and_parameters(query: str) -> str:
    """The query without its string literals and workbook parameter references."""
    return re.sub(r'@?"(?:[^"\\]|\\.)*"|\{[^{}]*\}', " ", query)


# --- the resource and its content ---------------------------------------------------------------


def test_the_workbook_is_a_shared_workbook_of_app_insights() -> None:
    workbook = infra_file(WORKBOOK).resource("workbook")
    assert workbook.type == "Microsoft.Insights/workbooks"
    assert literal(at(workbook.body, "kind")) == "shared"
    assert text(at(workbook.body, "properties", "sourceId")) == "appInsightsId"
    assert text(at(workbook.body, "name")).startswith("guid(")
    assert content_file() == INFRA_DIR / "workbooks" / "cloudscale.json"


def test_every_placeholder_is_filled_in() -> None:
    placeholders = set(re.findall(r"__[A-Z_]+__", content_file().read_text(encoding="utf-8")))
    assert placeholders
    assert placeholders == set(replacements())
    assert set(replacements().values()) == set(EXAMPLE_VALUES)
    assert not re.search(r"__[A-Z_]+__", json.dumps(deployed_workbook()))


def test_the_deployed_content_is_a_workbook() -> None:
    workbook = deployed_workbook()
    assert workbook["version"] == "Notebook/1.0"
    assert workbook["items"]
    assert workbook["fallbackResourceIds"] == [EXAMPLE_VALUES["appInsightsId"]]


def test_two_tabs_each_show_one_group() -> None:
    [tabs] = [item["content"] for item in deployed_workbook()["items"] if item["type"] == LINKS]
    assert tabs["style"] == "tabs"
    assert {link["cellValue"] for link in tabs["links"]} == {"view"}
    assert {link["linkTarget"] for link in tabs["links"]} == {"parameter"}
    # The first tab is the one selected when the workbook opens.
    assert [(link["linkLabel"], link["subTarget"]) for link in tabs["links"]] == [
        ("Service levels", "slo"),
        ("Live events", "live"),
    ]
    groups = [item for item in deployed_workbook()["items"] if item["type"] == GROUP]
    assert [group["conditionalVisibility"] for group in groups] == [
        {"parameterName": "view", "comparison": "isEqualTo", "value": view} for view in ("slo", "live")
    ]


def test_every_parameter_a_query_names_is_declared_in_its_tab() -> None:
    for view in ("slo", "live"):
        declared = parameters(tab(view))
        for item in tab(view):
            content = item["content"]
            named = set(re.findall(r"\{(\w+)(?::\w+)?\}", content.get("query", "")))
            assert named <= set(declared), f"{item['name']} names undeclared {named - set(declared)}"
            source = content.get("timeContextFromParameter")
            if source is not None:
                assert declared[source]["type"] == 4, f"{item['name']}: {source} is not a time range"


# --- Service levels -------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", APP_METRICS)
def test_the_workbook_charts_the_app_metric(metric: str) -> None:
    assert metric in declared_metrics(), "the app no longer emits it"
    assert f'\\"{metric}\\"' in json.dumps(tab("slo"))


@pytest.mark.parametrize("metric", ["ActiveMessages", "DeadletteredMessages"])
def test_the_workbook_charts_queue_and_dead_letter_depth(metric: str) -> None:
    charts = [item["content"] for item in tab("slo") if item["type"] == 10]
    [chart] = [chart for chart in charts if chart["metrics"][0]["metric"].endswith(f"--{metric}")]
    assert chart["resourceIds"] == [EXAMPLE_VALUES["serviceBusNamespaceId"]]
    assert "events" in chart["filters"][0]["values"]


@pytest.mark.parametrize(
    "title", ["Availability", "Ingest latency", "Processing latency", "Error budget", "Fraud", "Rate-limit"]
)
def test_the_workbook_has_a_panel_for(title: str) -> None:
    titles = [item["content"].get("title", "") for item in tab("slo")]
    assert any(found.startswith(title) for found in titles)


# --- Live events ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "title",
    [
        "Latest events",
        "Events in analytics",
        "Rejected events by reason",
        "Rate-limit rejections (429) by limit",
        "Fraud rules fired on stored events, by rule",
        "Analytics lag",
    ],
)
def test_the_live_tab_has_a_panel_for(title: str) -> None:
    titles = [item["content"].get("title", "") for item in tab("live")]
    assert any(found.startswith(title) for found in titles)


def test_the_live_tab_has_its_own_time_range_and_filters() -> None:
    declared = parameters(tab("live"))
    assert declared["LiveTimeRange"]["type"] == 4
    assert declared["LiveTimeRange"]["value"] == {"durationMs": 3600000}
    for name in ("Tenant", "EventType"):
        assert declared[name]["type"] == 1
        assert declared[name]["value"] == "", "empty: no filter"
        assert not declared[name].get("isRequired")


def test_data_explorer_queries_read_the_deployed_cluster_and_database() -> None:
    for query in data_explorer_queries():
        assert query["version"] == "AzureDataExplorerQuery/1.0"
        assert query["clusterName"] == EXAMPLE_VALUES["kustoClusterUri"]
        assert query["databaseName"] == EXAMPLE_VALUES["kustoDatabaseName"]
    params = at(infra_file("main.bicep").module("workbook").body, "params")
    assert text(at(params, "kustoClusterUri")) == "kusto.outputs.clusterUri"
    assert text(at(params, "kustoDatabaseName")) == "kusto.outputs.databaseName"
    outputs = infra_file("modules/kusto.bicep").outputs()
    assert text(outputs["clusterUri"]) == "cluster.properties.uri"
    assert text(outputs["databaseName"]) == "database.name"


def test_data_explorer_queries_filter_by_the_time_range_themselves() -> None:
    # The Data Explorer data source gets no time context from the workbook: the query must bound
    # the rows itself, or the newest-first table and the charts would read the whole database.
    for query in data_explorer_queries():
        assert "| where ReceivedAt between ({LiveTimeRange:start} .. {LiveTimeRange:end})" in query["queryText"]


def test_data_explorer_queries_name_only_the_schema_s_tables_and_columns() -> None:
    tables, columns = schema()
    for query in data_explorer_queries():
        source = query["queryText"]
        assert source.split("\n", 1)[0] in tables
        # The queries' own names (aliases, functions) are lower case: every capitalised name is
        # a table or a column the schema script creates.
        named = set(re.findall(r"\b[A-Z]\w*\b", outside_strings_and_parameters(source)))
        assert named <= tables | columns, f"not in changefeed/kusto/events.kql: {named - tables - columns}"


def test_the_latest_events_table_shows_what_the_dashboard_shows() -> None:
    texts = [query["queryText"] for query in data_explorer_queries()]
    [latest] = [source for source in texts if "| top 100 by ReceivedAt desc" in source]
    assert latest.startswith("EventsDedup\n"), "one row per event"
    projected = latest.rsplit("| project ", 1)[1].split(", ")
    assert projected[:6] == ["ReceivedAt", "TenantId", "EventType", "EventId", "Suspicious", "FraudReasons"]


def test_the_lag_from_data_explorer_is_ingestion_time_minus_receipt() -> None:
    texts = [query["queryText"] for query in data_explorer_queries()]
    [lag] = [source for source in texts if "ingestion_time()" in source]
    # ingestion_time() is the raw table's: the view keeps one row per event, not when it arrived.
    assert lag.startswith("Events\n")
    assert "(ingestion_time() - ReceivedAt) / 1s" in lag


@pytest.mark.parametrize("metric", LIVE_METRICS)
def test_the_live_tab_charts_the_app_metric(metric: str) -> None:
    assert metric in declared_metrics(), "shared/telemetry.py declares no such instrument"
    charted = [query for query in queries("live", LOGS) if f'where name == "{metric}"' in query["query"]]
    assert charted
    for query in charted:
        assert query["query"].startswith("customMetrics\n")
        assert query["crossComponentResources"] == [EXAMPLE_VALUES["appInsightsId"]]
        assert query["timeContextFromParameter"] == "LiveTimeRange"


def test_live_metric_queries_name_only_metrics_the_app_declares() -> None:
    declared = declared_metrics()
    for query in queries("live", LOGS):
        for metric in re.findall(r'name == "(\w+)"', query["query"]):
            assert metric in declared, metric
        columns = set(re.findall(r"\bvalue\w*\b", outside_strings_and_parameters(query["query"])))
        assert columns <= CUSTOM_METRICS_VALUE_COLUMNS, columns


@pytest.mark.parametrize(
    ("metric", "attribute"),
    [
        ("cloudscale_events_rejected_total", "reason"),
        ("cloudscale_rate_limit_rejections_total", "limit"),
        ("cloudscale_fraud_detected_total", "rule"),
        ("cloudscale_analytics_lag_seconds", "since"),
    ],
)
def test_live_panels_split_by_an_attribute_the_app_records(metric: str, attribute: str) -> None:
    charted = [query["query"] for query in queries("live", LOGS) if f'where name == "{metric}"' in query["query"]]
    assert charted
    for query in charted:
        assert set(re.findall(r"customDimensions\.(\w+)", query)) == {attribute}
    recorded = recorded_attributes(declared_metrics()[metric])
    assert attribute in recorded, f"{metric} is recorded with {sorted(recorded)}, not {attribute!r}"


def test_the_docs_name_the_tabs_the_workbook_has() -> None:
    deploy = (REPO_ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for label in ("Service levels", "Live events"):
        assert f"*{label}*" in deploy, label
    assert "*Live events*" in readme
