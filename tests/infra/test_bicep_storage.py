"""Host storage and the rate-limit table: reachable with an identity only."""

from __future__ import annotations

from shared.settings import Settings
from tests.infra.bicep import at, infra_file, literal, text


def storage_account_properties() -> dict[str, object]:
    account = infra_file("modules/storage.bicep").resource("account")
    assert account.type == "Microsoft.Storage/storageAccounts"
    properties: dict[str, object] = literal(at(account.body, "properties"))
    return properties


def test_shared_keys_are_disabled() -> None:
    assert storage_account_properties()["allowSharedKeyAccess"] is False


def test_tls_1_2_https_only_and_no_public_blobs() -> None:
    properties = storage_account_properties()
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["allowBlobPublicAccess"] is False


def test_the_deployment_container_is_private_and_is_what_the_app_runs_from() -> None:
    storage = infra_file("modules/storage.bicep")
    container = storage.resource("deploymentContainer")
    assert container.type == "Microsoft.Storage/storageAccounts/blobServices/containers"
    assert literal(at(container.body, "properties", "publicAccess")) == "None"
    url = text(storage.outputs()["deploymentContainerUrl"])
    assert url == "'${account.properties.primaryEndpoints.blob}${deploymentContainer.name}'"


def test_the_rate_limit_table_is_the_one_the_app_uses() -> None:
    storage = infra_file("modules/storage.bicep")
    table = storage.resource("rateLimitTable")
    assert table.type == "Microsoft.Storage/storageAccounts/tableServices/tables"
    assert text(at(table.body, "name")) == "rateLimitTableName"
    default = storage.params()["rateLimitTableName"].default
    assert default is not None
    assert literal(default) == Settings.model_fields["rate_limit_table"].default
    assert text(storage.outputs()["rateLimitTableName"]) == "rateLimitTable.name"


def test_the_tenants_table_is_the_one_the_app_uses() -> None:
    storage = infra_file("modules/storage.bicep")
    table = storage.resource("tenantsTable")
    assert table.type == "Microsoft.Storage/storageAccounts/tableServices/tables"
    assert text(at(table.body, "name")) == "tenantsTableName"
    default = storage.params()["tenantsTableName"].default
    assert default is not None
    assert literal(default) == Settings.model_fields["tenants_table"].default
    assert text(storage.outputs()["tenantsTableName"]) == "tenantsTable.name"


def test_the_table_endpoint_is_the_account_s() -> None:
    endpoint = infra_file("modules/storage.bicep").outputs()["tableEndpoint"]
    assert text(endpoint) == "account.properties.primaryEndpoints.table"
