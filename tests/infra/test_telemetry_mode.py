"""The host and the Python worker both speak OpenTelemetry on Azure, so an event is one trace."""

from __future__ import annotations

import json

from tests.infra.bicep import REPO_ROOT, infra_file, literal, text


def test_the_host_exports_its_telemetry_through_opentelemetry() -> None:
    host_json = json.loads((REPO_ROOT / "host.json").read_text(encoding="utf-8"))

    assert host_json["telemetryMode"] == "OpenTelemetry"


def test_the_worker_hands_the_invocations_trace_context_to_opentelemetry() -> None:
    settings = infra_file("modules/functionapp.bicep").variables()["appSettings"]
    values = {
        text(item.named_children[0]): item.named_children[-1]
        for item in settings.named_children
        if item.type == "object_property"
    }

    assert literal(values["PYTHON_ENABLE_OPENTELEMETRY"]) == "true"
