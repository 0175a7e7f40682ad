"""Data Explorer: streaming ingestion, 30-day retention, and the code's schema script."""

from __future__ import annotations

import json
import re

import pytest

from shared.adapters.analytics.kusto_schema import events_commands, events_script_path
from shared.settings import Settings
from tests.infra.bicep import INFRA_DIR, at, calls, infra_file, literal

KUSTO = "modules/kusto.bicep"
# What a database script resource may run (Azure Data Explorer, "Configure a database using a
# Kusto Query Language script").
SCRIPT_VERBS = (".create", ".create-or-alter", ".create-merge", ".alter", ".alter-merge", ".add")


def test_the_cluster_takes_streaming_ingestion_and_has_an_identity() -> None:
    cluster = infra_file(KUSTO).resource("cluster")
    assert cluster.type == "Microsoft.Kusto/clusters"
    assert literal(at(cluster.body, "properties", "enableStreamingIngest")) is True
    assert literal(at(cluster.body, "identity", "type")) == "SystemAssigned"


def test_the_cluster_allows_purges_for_data_subject_erasure() -> None:
    # `.purge` (the Data Explorer eraser) is refused on a cluster without it.
    cluster = infra_file(KUSTO).resource("cluster")
    assert literal(at(cluster.body, "properties", "enablePurge")) is True


def test_the_database_keeps_30_days() -> None:
    database = infra_file(KUSTO).resource("database")
    assert literal(at(database.body, "properties", "softDeletePeriod")) == "P30D"
    assert re.fullmatch(r"P\d+D", literal(at(database.body, "properties", "hotCachePeriod")))
    default = infra_file(KUSTO).params()["databaseName"].default
    assert default is not None
    assert literal(default) == Settings.model_fields["kusto_database"].default


def test_the_schema_script_is_the_code_s_kql_file() -> None:
    script = infra_file(KUSTO).resource("schema")
    assert script.type == "Microsoft.Kusto/clusters/databases/scripts"
    [[path]] = calls(at(script.body, "properties", "scriptContent"), "loadTextContent")
    assert (INFRA_DIR / "modules" / literal(path)).resolve() == events_script_path().resolve()
    assert literal(at(script.body, "properties", "continueOnErrors")) is False


@pytest.mark.parametrize("command", events_commands(), ids=lambda command: command.split("\n")[0][:50])
def test_every_schema_command_is_one_a_database_script_runs(command: str) -> None:
    verb = command.split()[0]
    assert verb in SCRIPT_VERBS


@pytest.mark.parametrize(("environment", "dev_sku", "least_capacity"), [("dev", True, 1), ("prod", False, 2)])
def test_production_gets_an_sla_and_development_the_cheap_single_node(
    environment: str, dev_sku: bool, least_capacity: int
) -> None:
    path = INFRA_DIR / "parameters" / f"{environment}.parameters.json"
    values = {name: entry["value"] for name, entry in json.loads(path.read_text())["parameters"].items()}
    assert values["kustoSkuName"].startswith("Dev(") is dev_sku
    assert values["kustoCapacity"] >= least_capacity
