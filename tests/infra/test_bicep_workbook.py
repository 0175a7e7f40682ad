"""The SLO workbook: valid JSON once deployed, on the metrics the app really emits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import INFRA_DIR, REPO_ROOT, at, calls, infra_file, literal, text

WORKBOOK = "modules/workbook.bicep"
APP_METRICS = (
    "cloudscale_events_ingested_total",
    "cloudscale_ingestion_duration_seconds",
    "cloudscale_fraud_detected_total",
    "cloudscale_rate_limit_rejections_total",
    "cloudscale_processing_duration_seconds",
)
EXAMPLE_IDS = {
    "appInsightsId": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Insights/components/appi",
    "serviceBusNamespaceId": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ServiceBus/namespaces/sb",
}


def content_file() -> Path:
    [[path]] = calls(infra_file(WORKBOOK).variables()["content"], "loadTextContent")
    relative: str = literal(path)
    return (INFRA_DIR / "modules" / relative).resolve()


def replacements() -> dict[str, str]:
    """Placeholder -> the parameter the Bicep puts in its place."""
    serialized = at(infra_file(WORKBOOK).resource("workbook").body, "properties", "serializedData")
    return {literal(arguments[1]): text(arguments[2]) for arguments in calls(serialized, "replace")}


def deployed_workbook() -> dict[str, Any]:
    content = content_file().read_text(encoding="utf-8")
    for placeholder, param in replacements().items():
        content = content.replace(placeholder, EXAMPLE_IDS[param])
    workbook: dict[str, Any] = json.loads(content)
    return workbook


def test_the_workbook_is_a_shared_workbook_of_app_insights() -> None:
    workbook = infra_file(WORKBOOK).resource("workbook")
    assert workbook.type == "Microsoft.Insights/workbooks"
    assert literal(at(workbook.body, "kind")) == "shared"
    assert text(at(workbook.body, "properties", "sourceId")) == "appInsightsId"
    assert text(at(workbook.body, "name")).startswith("guid(")
    assert content_file() == INFRA_DIR / "workbooks" / "slo.json"


def test_every_placeholder_is_filled_in() -> None:
    placeholders = set(re.findall(r"__[A-Z_]+__", content_file().read_text(encoding="utf-8")))
    assert placeholders
    assert placeholders == set(replacements())
    assert not re.search(r"__[A-Z_]+__", json.dumps(deployed_workbook()))


def test_the_deployed_content_is_a_workbook() -> None:
    workbook = deployed_workbook()
    assert workbook["version"] == "Notebook/1.0"
    assert workbook["items"]
    assert workbook["fallbackResourceIds"] == [EXAMPLE_IDS["appInsightsId"]]


@pytest.mark.parametrize("metric", APP_METRICS)
def test_the_workbook_charts_the_app_metric(metric: str) -> None:
    telemetry = (REPO_ROOT / "shared" / "telemetry.py").read_text(encoding="utf-8")
    assert f'"{metric}"' in telemetry, "the app no longer emits it"
    assert f'\\"{metric}\\"' in json.dumps(deployed_workbook())


@pytest.mark.parametrize("metric", ["ActiveMessages", "DeadletteredMessages"])
def test_the_workbook_charts_queue_and_dead_letter_depth(metric: str) -> None:
    charts = [item["content"] for item in deployed_workbook()["items"] if item["type"] == 10]
    [chart] = [chart for chart in charts if chart["metrics"][0]["metric"].endswith(f"--{metric}")]
    assert chart["resourceIds"] == [EXAMPLE_IDS["serviceBusNamespaceId"]]
    assert "events" in chart["filters"][0]["values"]


@pytest.mark.parametrize(
    "title", ["Availability", "Ingest latency", "Processing latency", "Error budget", "Fraud", "Rate-limit"]
)
def test_the_workbook_has_a_panel_for(title: str) -> None:
    titles = [item["content"].get("title", "") for item in deployed_workbook()["items"]]
    assert any(found.startswith(title) for found in titles)
