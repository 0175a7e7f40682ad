"""Every Bicep file parses, and the files fit together: modules exist, are given the parameters
they declare, and are read for outputs they have; every file a template loads exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA_DIR, BicepFile, Module, calls, infra_file, literal, prop, text

BICEP_FILES = sorted(INFRA_DIR.rglob("*.bicep"))
MODULES = infra_file("main.bicep").modules()


def test_the_templates_are_found() -> None:
    assert INFRA_DIR / "main.bicep" in BICEP_FILES
    assert len(BICEP_FILES) >= 10


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda path: str(path.relative_to(INFRA_DIR)))
def test_file_parses_without_errors(path: Path) -> None:
    assert BicepFile.parse(path).errors() == []


@pytest.mark.parametrize(
    "broken",
    [
        "resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n",
        "param size int = \n",
        "output url string = 'https://${host'\n",
    ],
    ids=["unclosed object", "missing default", "unclosed interpolation"],
)
def test_a_broken_file_is_reported(broken: str) -> None:
    assert BicepFile.parse_text(broken).errors() != []


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.symbol)
def test_every_module_of_main_exists(module: Module) -> None:
    path = (INFRA_DIR / module.path).resolve()
    assert path.is_file()
    assert path.is_relative_to(INFRA_DIR / "modules")


@pytest.mark.parametrize("module", MODULES, ids=lambda module: module.symbol)
def test_each_module_is_given_exactly_its_parameters(module: Module) -> None:
    target = BicepFile.parse(INFRA_DIR / module.path)
    params = prop(module.body, "params")
    assert params is not None
    given = {text(item.named_children[0]) for item in params.named_children if item.type == "object_property"}
    declared = target.params()
    required = {name for name, param in declared.items() if param.default is None}
    assert given <= set(declared), f"unknown parameters: {given - set(declared)}"
    assert required <= given, f"required parameters not given: {required - given}"


def test_main_reads_only_outputs_its_modules_have() -> None:
    main = infra_file("main.bicep")
    outputs = {module.symbol: set(BicepFile.parse(INFRA_DIR / module.path).outputs()) for module in main.modules()}
    read = re.findall(r"\b(\w+) \. outputs \. (\w+)\b", main.code())
    assert read, "main.bicep reads no module output"
    missing = [f"{symbol}.outputs.{name}" for symbol, name in read if name not in outputs[symbol]]
    assert missing == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda path: str(path.relative_to(INFRA_DIR)))
def test_every_loaded_file_exists(path: Path) -> None:
    bicep = BicepFile.parse(path)
    for function in ("loadTextContent", "loadJsonContent"):
        for arguments in calls(bicep.root, function):
            assert (path.parent / literal(arguments[0])).resolve().is_file()


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda path: str(path.relative_to(INFRA_DIR)))
def test_no_service_host_name_is_written_out(path: Path) -> None:
    """Endpoints come from the resources' properties: right in every Azure cloud, and never
    pointing at an account whose name changed."""
    hosts = re.compile(r"core\.windows\.net|servicebus\.windows\.net|documents\.azure\.com|kusto\.windows\.net")
    assert [string for string in BicepFile.parse(path).strings() if hosts.search(string)] == []
