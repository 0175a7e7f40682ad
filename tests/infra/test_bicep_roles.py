"""The app identity's roles: the built-in role ids, each on the narrowest scope it works on."""

from __future__ import annotations

import pytest

from tests.infra.bicep import Resource, at, infra_file, literal, text

ROLES = "modules/roles.bicep"
# Azure built-in role definition ids (the same in every tenant).
BUILT_IN_ROLES = {
    "serviceBusDataOwner": "090c5cfd-751d-490a-894a-3ce6f1109419",
    "serviceBusDataSender": "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39",
    "serviceBusDataReceiver": "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0",
    "storageBlobDataOwner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storageTableDataContributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
}
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
# Roles the app must never hold: Owner, Contributor, and Storage Queue Data Contributor (the
# host needs queues only for blob triggers, which the app does not have).
FORBIDDEN_ROLES = (
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
)


def role_assignments() -> list[Resource]:
    return infra_file(ROLES).resources("Microsoft.Authorization/roleAssignments")


def app_grants() -> set[tuple[str, str]]:
    """(scope symbol, role variable) of every unconditional role assignment to the app."""
    grants = set()
    for assignment in role_assignments():
        if assignment.condition is not None:
            continue
        properties = at(assignment.body, "properties")
        assert text(at(properties, "principalId")) == "principalId"
        assert literal(at(properties, "principalType")) == "ServicePrincipal"
        definition = text(at(properties, "roleDefinitionId"))
        prefix = "subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
        assert definition.startswith(prefix)
        role = definition.removeprefix(prefix).removesuffix(")")
        grants.add((text(at(assignment.body, "scope")), role))
    return grants


def test_role_variables_hold_the_built_in_ids() -> None:
    variables = infra_file(ROLES).variables()
    for name, role_id in BUILT_IN_ROLES.items():
        assert literal(variables[name]) == role_id, name
    assert literal(variables["cosmosDataContributor"]) == COSMOS_DATA_CONTRIBUTOR


@pytest.mark.parametrize(
    ("scope", "role"),
    [
        ("eventsQueue", "serviceBusDataOwner"),
        ("poisonQueue", "serviceBusDataSender"),
        # The erasure timer removes an erased subject's parked messages (docs/privacy.md).
        ("poisonQueue", "serviceBusDataReceiver"),
        ("storageAccount", "storageBlobDataOwner"),
        ("storageAccount", "storageTableDataContributor"),
    ],
)
def test_the_app_holds(scope: str, role: str) -> None:
    assert (scope, role) in app_grants()


def test_the_app_holds_nothing_more() -> None:
    assert len(app_grants()) == 5


def test_the_events_queue_grants_manage_for_target_based_scaling() -> None:
    """The scale controller reads the events queue's length with the trigger's identity.

    That read needs Manage rights; with Listen (Data Receiver) the Service Bus trigger falls
    back to incremental scaling. Data Owner is the built-in role that carries Manage, and it
    already includes send and receive, so it is the events queue's only grant.
    """
    events_roles = {role for scope, role in app_grants() if scope == "eventsQueue"}
    assert events_roles == {"serviceBusDataOwner"}


def test_data_owner_is_on_the_events_queue_and_nowhere_else() -> None:
    owners = [
        assignment
        for assignment in role_assignments()
        if text(at(assignment.body, "properties", "roleDefinitionId")).endswith(", serviceBusDataOwner)")
    ]
    assert [text(at(assignment.body, "scope")) for assignment in owners] == ["eventsQueue"]
    assert all(assignment.condition is None for assignment in owners)
    scopes = {text(at(assignment.body, "scope")) for assignment in role_assignments()}
    assert "namespace" not in scopes, "no Service Bus role on the whole namespace"


@pytest.mark.parametrize(
    ("symbol", "resource_type", "name"),
    [
        ("eventsQueue", "Microsoft.ServiceBus/namespaces/queues", "eventsQueueName"),
        ("poisonQueue", "Microsoft.ServiceBus/namespaces/queues", "poisonQueueName"),
        ("storageAccount", "Microsoft.Storage/storageAccounts", "storageAccountName"),
    ],
)
def test_scopes_are_the_resources_themselves(symbol: str, resource_type: str, name: str) -> None:
    scope = infra_file(ROLES).resource(symbol)
    assert scope.existing
    assert scope.type == resource_type
    assert text(at(scope.body, "name")) == name


def test_assignment_names_are_deterministic() -> None:
    for assignment in role_assignments():
        name = text(at(assignment.body, "name"))
        scope = text(at(assignment.body, "scope"))
        assert name.startswith(f"guid({scope}.id, "), assignment.symbol
        role = text(at(assignment.body, "properties", "roleDefinitionId")).split(", ")[-1].removesuffix(")")
        assert name.endswith(f", {role})"), assignment.symbol


def test_no_broad_role_anywhere() -> None:
    code = infra_file(ROLES).code()
    for role_id in FORBIDDEN_ROLES:
        assert role_id not in code


def test_cosmos_data_contributor_on_the_database_only() -> None:
    [assignment] = infra_file(ROLES).resources("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments")
    properties = at(assignment.body, "properties")
    assert text(at(assignment.body, "parent")) == "cosmosAccount"
    assert text(at(properties, "principalId")) == "principalId"
    assert (
        text(at(properties, "roleDefinitionId")) == "'${cosmosAccount.id}/sqlRoleDefinitions/${cosmosDataContributor}'"
    )
    assert text(at(properties, "scope")) == "'${cosmosAccount.id}/dbs/${cosmosDatabaseName}'"
    assert text(at(assignment.body, "name")).startswith("guid(cosmosAccount.id, principalId, ")


def test_data_explorer_ingestor_viewer_and_admin_on_the_database() -> None:
    assignments = infra_file(ROLES).resources("Microsoft.Kusto/clusters/databases/principalAssignments")
    roles = {}
    for assignment in assignments:
        assert text(at(assignment.body, "parent")) == "kustoDatabase"
        properties = at(assignment.body, "properties")
        assert text(at(properties, "principalId")) == "principalId"
        assert literal(at(properties, "principalType")) == "App"
        roles[literal(at(properties, "role"))] = assignment
    # Admin is what `.purge` needs (data-subject erasure); the database's, never AllDatabasesAdmin.
    assert set(roles) == {"Ingestor", "Viewer", "Admin"}
    # Principal changes on one database are applied one at a time: each waits for the previous.
    assert text(at(roles["Viewer"].body, "dependsOn")).replace(" ", "").replace("\n", "") == "[kustoIngestor]"
    assert text(at(roles["Admin"].body, "dependsOn")).replace(" ", "").replace("\n", "") == "[kustoViewer]"
    for role, assignment in roles.items():
        assert text(at(assignment.body, "name")) == f"guid(kustoDatabase.id, principalId, '{role}')"


def test_the_principal_is_the_function_app_identity() -> None:
    params = at(infra_file("main.bicep").module("roles").body, "params")
    assert text(at(params, "principalId")) == "functionApp.outputs.principalId"


def test_the_dead_letter_operator_is_granted_only_when_named() -> None:
    conditional = [assignment for assignment in role_assignments() if assignment.condition is not None]
    assert conditional
    for assignment in conditional:
        assert assignment.condition is not None
        assert text(assignment.condition) == "(hasOperator)"
        assert text(at(assignment.body, "properties", "principalId")) == "deadLetterOperatorPrincipalId"
    assert text(infra_file(ROLES).variables()["hasOperator"]) == "!empty(deadLetterOperatorPrincipalId)"
    default = infra_file("main.bicep").params()["deadLetterOperatorPrincipalId"].default
    assert default is not None
    assert literal(default) == ""
