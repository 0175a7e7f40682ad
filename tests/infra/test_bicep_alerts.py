"""Alert rules with the service's thresholds, on queries and metrics that exist."""

from __future__ import annotations

import ast
import re
from typing import Any

import pytest
from tree_sitter import Node

from tests.infra.bicep import REPO_ROOT, at, infra_file, literal, text

ALERTS = "modules/alerts.bicep"


def registered_functions() -> set[str]:
    """Names given with `@bp.function_name(...)` in the stages' blueprints."""
    names: set[str] = set()
    for path in REPO_ROOT.glob("*/blueprint.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "function_name"
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names.add(node.args[0].value)
    return names


def properties(symbol: str) -> Node:
    return at(infra_file(ALERTS).resource(symbol).body, "properties")


def query_criterion(symbol: str) -> tuple[str, dict[str, Any]]:
    """A log alert's query (its variable resolved) and the rest of its one criterion."""
    [criterion] = at(properties(symbol), "criteria", "allOf").named_children
    query = infra_file(ALERTS).variables()[text(at(criterion, "query"))]
    rest = {
        text(item.named_children[0]): literal(item.named_children[-1])
        for item in criterion.named_children
        if item.type == "object_property" and text(item.named_children[0]) != "query"
    }
    return literal(query), rest


def metric_criterion(symbol: str) -> dict[str, Any]:
    [criterion] = at(properties(symbol), "criteria", "allOf").named_children
    dimensions = at(criterion, "dimensions")
    [dimension] = dimensions.named_children
    fields: dict[str, Any] = {
        text(item.named_children[0]): literal(item.named_children[-1])
        for item in criterion.named_children
        if item.type == "object_property" and text(item.named_children[0]) != "dimensions"
    }
    fields["dimension"] = literal(at(dimension, "name"))
    fields["entities"] = [text(value) for value in at(dimension, "values").named_children]
    return fields


def test_the_function_names_are_found() -> None:
    assert {"ingest_events", "process_event", "events_to_analytics"} <= registered_functions()


@pytest.mark.parametrize("symbol", ["errorRate", "ingestLatency"])
def test_log_alerts_query_functions_the_app_registers(symbol: str) -> None:
    query, _ = query_criterion(symbol)
    named = set(re.findall(r'"([a-z_]+)"', query)) - {"4"}
    assert named
    assert named <= registered_functions()


def test_error_rate_above_5_percent_for_5_minutes_is_critical() -> None:
    query, criterion = query_criterion("errorRate")
    rule = properties("errorRate")
    assert literal(at(rule, "severity")) == 0
    assert literal(at(rule, "windowSize")) == "PT5M"
    assert criterion["operator"] == "GreaterThan"
    assert criterion["threshold"] == 5
    column = criterion["metricMeasureColumn"]
    assert re.search(rf"\b{column} = 100\.0 \* failed / total\b", query), "a percentage, failed of all"
    assert "toint(resultCode) >= 500" in query


def test_ingest_p99_above_500_ms_for_10_minutes_is_a_warning() -> None:
    query, criterion = query_criterion("ingestLatency")
    rule = properties("ingestLatency")
    assert literal(at(rule, "severity")) == 2
    assert literal(at(rule, "windowSize")) == "PT10M"
    assert criterion["operator"] == "GreaterThan"
    assert criterion["threshold"] == 500
    column = criterion["metricMeasureColumn"]
    assert re.search(rf"\b{column} = percentile\(duration, 99\)", query), "requests.duration is in milliseconds"
    assert '"ingest_events"' in query


@pytest.mark.parametrize(
    ("symbol", "metric", "queue", "threshold", "severity"),
    [
        ("queueDepth", "ActiveMessages", "eventsQueueName", 5000, 3),
        ("deadLetters", "DeadletteredMessages", "eventsQueueName", 0, 2),
        ("poisonMessages", "ActiveMessages", "poisonQueueName", 0, 2),
    ],
)
def test_queue_alerts(symbol: str, metric: str, queue: str, threshold: int, severity: int) -> None:
    rule = infra_file(ALERTS).resource(symbol)
    assert rule.type == "Microsoft.Insights/metricAlerts"
    assert literal(at(rule.body, "properties", "severity")) == severity
    assert [text(scope) for scope in at(rule.body, "properties", "scopes").named_children] == ["serviceBusNamespaceId"]
    criterion = metric_criterion(symbol)
    assert criterion["metricNamespace"] == "Microsoft.ServiceBus/namespaces"
    assert criterion["metricName"] == metric
    assert criterion["dimension"] == "EntityName"
    assert criterion["entities"] == [queue]
    assert criterion["operator"] == "GreaterThan"
    assert criterion["threshold"] == threshold


@pytest.mark.parametrize(
    ("param", "source"),
    [
        ("eventsQueueName", "serviceBus.outputs.eventsQueueName"),
        ("poisonQueueName", "serviceBus.outputs.poisonQueueName"),
        ("serviceBusNamespaceId", "serviceBus.outputs.namespaceId"),
        ("appInsightsId", "monitoring.outputs.appInsightsId"),
        ("actionGroupId", "alertActionGroupId"),
    ],
)
def test_main_points_the_alerts_at_the_resources(param: str, source: str) -> None:
    assert text(at(infra_file("main.bicep").module("alerts").body, "params", param)) == source


@pytest.mark.parametrize(
    ("symbol", "path", "actions"),
    [
        ("errorRate", ("actions", "actionGroups"), "actionGroups"),
        ("ingestLatency", ("actions", "actionGroups"), "actionGroups"),
        ("deadLetters", ("actions",), "metricActions"),
        ("poisonMessages", ("actions",), "metricActions"),
    ],
)
def test_alerts_notify_the_action_group(symbol: str, path: tuple[str, ...], actions: str) -> None:
    assert text(at(properties(symbol), *path)) == actions
    variables = infra_file(ALERTS).variables()
    assert re.fullmatch(r"empty\(actionGroupId\) \? \[\] : \[\s*actionGroupId\s*\]", text(variables["actionGroups"]))
    assert re.match(r"\[for (\w+) in actionGroups: \{\s*actionGroupId: \1\s*\}\]", text(variables["metricActions"]))


def test_the_informational_queue_depth_alert_notifies_no_one() -> None:
    assert literal(at(properties("queueDepth"), "actions")) == []
