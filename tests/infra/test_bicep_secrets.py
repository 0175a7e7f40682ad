"""No key, SAS or connection string in the infrastructure: every connection is an identity."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA_DIR, BicepFile

BICEP_FILES = sorted(INFRA_DIR.rglob("*.bicep"))
INFRA_FILES = sorted(path for path in INFRA_DIR.rglob("*") if path.is_file())
CONNECTION_STRING_SETTINGS = ("ServiceBusConnection", "CosmosDBConnection", "AzureWebJobsStorage")
# Key material as it appears in connection strings and SAS tokens.
SECRET_MARKERS = re.compile(r"AccountKey=|SharedAccessKey|SharedAccessSignature|AccessKey=|[?&]sig=", re.IGNORECASE)


def secret_uses(bicep: BicepFile) -> list[str]:
    """What in a template's code (comments aside) would read or hand out a key."""
    code = bicep.code()
    found = re.findall(r"\blist\w*\s*\(", code)  # listKeys(), listConnectionStrings(), listAccountSas() ...
    found += re.findall(r"\b\w*(?:[Kk]eys?|[Ss]ecret)\s*\.\s*\w+", code)  # e.g. account.keys.primary
    # A connection string is allowed for Application Insights only: it names the component
    # and grants no access.
    for match in re.finditer(r"(\w+) \. properties \. ConnectionString|connection_?strings?", code, re.IGNORECASE):
        symbol = match.group(1)
        if symbol is not None and any(r.symbol == symbol for r in bicep.resources("Microsoft.Insights/components")):
            continue
        if match.group(0).upper() == "CONNECTION_STRING" and "APPLICATIONINSIGHTS_CONNECTION_STRING" in code:
            continue
        found.append(match.group(0))
    return found


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda path: str(path.relative_to(INFRA_DIR)))
def test_no_template_reads_or_passes_a_key(path: Path) -> None:
    assert secret_uses(BicepFile.parse(path)) == []


@pytest.mark.parametrize(
    "planted",
    [
        "var key = account.listKeys().keys[0].value",
        "var conn = cosmos.listConnectionStrings().connectionStrings[0].connectionString",
        "var conn = storageAccount.properties.ConnectionString",
        "var sas = account.listAccountSas(account.apiVersion, {}).accountSasToken",
    ],
)
def test_planted_key_use_is_found(planted: str) -> None:
    assert secret_uses(BicepFile.parse_text(planted)) != []


def test_the_app_insights_connection_string_is_allowed() -> None:
    allowed = (
        "resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {\n  name: 'x'\n}\n"
        "var settings = {\n  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString\n}\n"
    )
    assert secret_uses(BicepFile.parse_text(allowed)) == []


@pytest.mark.parametrize(
    "planted",
    [
        "Endpoint=sb://ns/;SharedAccessKeyName=root;SharedAccessKey=abc",
        "AccountName=st;AccountKey=abc",
        "?sv=2022&sig=abc",
    ],
)
def test_planted_key_material_is_found(planted: str) -> None:
    assert SECRET_MARKERS.search(planted)


@pytest.mark.parametrize("path", INFRA_FILES, ids=lambda path: str(path.relative_to(INFRA_DIR)))
def test_no_file_holds_key_material(path: Path) -> None:
    assert not SECRET_MARKERS.search(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda path: str(path.relative_to(INFRA_DIR)))
def test_no_connection_string_setting_is_written(path: Path) -> None:
    code = BicepFile.parse(path).code()
    for name in CONNECTION_STRING_SETTINGS:
        assert not re.search(rf"\b{name} :", code), f"{name} would hold a connection string"
