"""The deployment interface: main.bicep's parameters and outputs, and one parameters file per
environment that `az deployment group create -p` accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep import INFRA_DIR, Param, infra_file, literal, text

PARAMETER_FILES = sorted((INFRA_DIR / "parameters").glob("*.parameters.json"))
DEPLOYMENT_PARAMETERS_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"
REQUIRED_OUTPUTS = (
    "functionAppName",
    "ingestUrl",
    "healthUrl",
    "storageAccountName",
    "tableEndpoint",
    "serviceBusNamespace",
    "cosmosEndpoint",
    "kustoClusterUri",
    "kustoIngestUri",
    "kustoDatabase",
    "appInsightsName",
    "resourceGroupName",
)
PYTHON_TYPES: dict[str, type[Any]] = {"string": str, "int": int, "bool": bool, "object": dict, "array": list}


def main_params() -> dict[str, Param]:
    return infra_file("main.bicep").params()


def parameter_values(path: Path) -> dict[str, Any]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return {name: entry["value"] for name, entry in document["parameters"].items()}


def test_main_is_parameterised_by_environment_and_location() -> None:
    params = main_params()
    assert params["environmentName"].type == "string"
    assert params["environmentName"].default is None, "each environment names itself"
    location = params["location"].default
    assert location is not None
    assert text(location) == "resourceGroup().location"


def test_alerts_notify_no_one_unless_an_action_group_is_given() -> None:
    default = main_params()["alertActionGroupId"].default
    assert default is not None
    assert literal(default) == ""


@pytest.mark.parametrize("name", REQUIRED_OUTPUTS)
def test_main_declares_output(name: str) -> None:
    assert name in infra_file("main.bicep").outputs()


@pytest.mark.parametrize(("output", "path"), [("ingestUrl", "/api/events"), ("healthUrl", "/api/health")])
def test_urls_are_https_and_name_the_routes(output: str, path: str) -> None:
    url = text(infra_file("main.bicep").outputs()[output])
    assert url.startswith("'https://${")
    assert url.endswith(f"}}{path}'")


def test_there_is_a_parameters_file_for_dev_and_prod() -> None:
    assert {path.name for path in PARAMETER_FILES} >= {"dev.parameters.json", "prod.parameters.json"}


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda path: path.name)
def test_parameters_file_has_the_deployment_parameters_shape(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    assert set(document) == {"$schema", "contentVersion", "parameters"}
    assert document["$schema"] == DEPLOYMENT_PARAMETERS_SCHEMA
    assert document["contentVersion"] == "1.0.0.0"
    for name, entry in document["parameters"].items():
        assert set(entry) == {"value"}, f"{name}: each parameter is an object with a value"


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda path: path.name)
def test_parameters_file_names_only_declared_parameters(path: Path) -> None:
    assert set(parameter_values(path)) <= set(main_params())


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda path: path.name)
def test_parameters_file_supplies_every_required_parameter(path: Path) -> None:
    required = {name for name, param in main_params().items() if param.default is None}
    assert required <= set(parameter_values(path))


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda path: path.name)
def test_parameters_file_values_fit_their_declarations(path: Path) -> None:
    params = main_params()
    for name, value in parameter_values(path).items():
        param = params[name]
        assert type(value) is PYTHON_TYPES[param.type], f"{name}: {value!r} is not a {param.type}"
        decorators = param.decorators
        if (allowed := decorators.get("allowed")) is not None:
            assert value in literal(allowed), f"{name}: {value!r} is not allowed"
        if (minimum := decorators.get("minValue")) is not None:
            assert value >= literal(minimum), name
        if (maximum := decorators.get("maxValue")) is not None:
            assert value <= literal(maximum), name
        if (min_length := decorators.get("minLength")) is not None:
            assert len(value) >= literal(min_length), name
        if (max_length := decorators.get("maxLength")) is not None:
            assert len(value) <= literal(max_length), name


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda path: path.name)
def test_parameters_file_is_named_after_its_environment(path: Path) -> None:
    assert parameter_values(path)["environmentName"] == path.name.removesuffix(".parameters.json")
