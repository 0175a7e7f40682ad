"""Service Bus: the events queue as the code expects it, and the poison queue."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

import function_app
from cloudscale_local.host.functions import index_functions
from cloudscale_local.host.host_config import load_host_config
from process import blueprint as process_blueprint
from shared.domain.delivery import MAX_LOCK_SECONDS, outage_bound_seconds, require_retry_fits_lock
from shared.settings import Settings
from tests.infra.bicep import at, infra_file, literal, text

SERVICE_BUS = "modules/servicebus.bicep"
REPO = Path(__file__).resolve().parents[2]


def queue_properties(symbol: str) -> dict[str, Any]:
    queue = infra_file(SERVICE_BUS).resource(symbol)
    assert queue.type == "Microsoft.ServiceBus/namespaces/queues"
    properties = at(queue.body, "properties")
    return {
        text(item.named_children[0]): item.named_children[-1]
        for item in properties.named_children
        if item.type == "object_property"
    }


def variable(name: str) -> Any:
    return literal(infra_file(SERVICE_BUS).variables()[name])


def iso_duration_seconds(duration: str) -> int:
    match = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", duration)
    assert match, f"not an ISO 8601 duration: {duration}"
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def test_the_namespace_is_standard_or_premium_without_local_auth() -> None:
    service_bus = infra_file(SERVICE_BUS)
    namespace = service_bus.resource("namespace")
    assert literal(at(namespace.body, "properties", "disableLocalAuth")) is True
    sku = service_bus.params()["skuName"]
    assert sku.default is not None
    assert literal(sku.default) in {"Standard", "Premium"}
    allowed = sku.decorators["allowed"]
    assert allowed is not None
    assert "Basic" not in literal(allowed), "Basic has no duplicate detection"


def test_the_queue_names_are_the_app_defaults() -> None:
    assert variable("eventsQueueName") == Settings.model_fields["events_queue"].default
    assert variable("poisonQueueName") == Settings.model_fields["poison_queue"].default
    assert text(at(infra_file(SERVICE_BUS).resource("eventsQueue").body, "name")) == "eventsQueueName"
    assert text(at(infra_file(SERVICE_BUS).resource("poisonQueue").body, "name")) == "poisonQueueName"


def test_events_are_deduplicated_within_a_window() -> None:
    properties = queue_properties("eventsQueue")
    assert literal(properties["requiresDuplicateDetection"]) is True
    window = iso_duration_seconds(literal(properties["duplicateDetectionHistoryTimeWindow"]))
    assert 60 <= window <= 24 * 3600, "long enough for a producer's retry, short enough to stay cheap"


def test_events_are_delivered_as_often_as_the_code_expects() -> None:
    assert text(queue_properties("eventsQueue")["maxDeliveryCount"]) == "eventsMaxDeliveryCount"
    assert variable("eventsMaxDeliveryCount") == Settings.model_fields["queue_max_delivery_count"].default


def test_the_lock_matches_the_code() -> None:
    assert text(queue_properties("eventsQueue")["lockDuration"]) == "'PT${eventsLockSeconds}S'"
    lock_seconds = variable("eventsLockSeconds")
    assert lock_seconds == Settings.model_fields["queue_lock_seconds"].default
    assert lock_seconds <= MAX_LOCK_SECONDS, "Service Bus locks for at most 5 minutes"


def test_the_outage_arithmetic_holds_across_host_json_settings_and_the_queue() -> None:
    """One invariant, three files: a batch settles within its lock, which nothing renews."""
    host = load_host_config(REPO / "host.json")
    [process_event] = [f for f in index_functions(function_app.app).service_bus if f.name == "process_event"]
    lock_seconds = variable("eventsLockSeconds")
    max_deliveries = variable("eventsMaxDeliveryCount")
    retry_seconds = Settings.model_fields["process_retry_seconds"].default
    hold_seconds = process_blueprint.MISCONFIGURED_HOLD_SECONDS

    # the process stage takes batches, so the host renews no lock and runs one batch at a time
    assert process_event.many
    # the retry budget (and the hold of a misconfigured stage) leave a fifth of the lock
    require_retry_fits_lock(retry_seconds, lock_seconds)
    require_retry_fits_lock(hold_seconds, lock_seconds)
    # so does the sample settings file a developer copies for `func start`
    sample = orjson.loads((REPO / "local.settings.sample.json").read_bytes())["Values"]
    assert float(sample["CLOUDSCALE_QUEUE_LOCK_SECONDS"]) == lock_seconds
    require_retry_fits_lock(float(sample["CLOUDSCALE_PROCESS_RETRY_SECONDS"]), lock_seconds)
    # the host does not time an invocation out before its lock would run out anyway
    assert host.function_timeout_seconds is None or host.function_timeout_seconds >= lock_seconds
    # and the bound the README states is what these numbers give
    bound_minutes = int(outage_bound_seconds(retry_seconds, max_deliveries) // 60)
    assert bound_minutes == 39
    assert f"shorter than {bound_minutes} minutes dead-letters nothing" in (REPO / "README.md").read_text()


def test_expired_events_are_dead_lettered() -> None:
    properties = queue_properties("eventsQueue")
    assert literal(properties["deadLetteringOnMessageExpiration"]) is True


def test_the_poison_queue_survives_browsing_and_keeps_messages_long() -> None:
    properties = queue_properties("poisonQueue")
    assert literal(properties["maxDeliveryCount"]) >= 100, "each replay pass abandons, costing a delivery"
    assert iso_duration_seconds(literal(properties["defaultMessageTimeToLive"])) >= 30 * 24 * 3600
    assert literal(properties["deadLetteringOnMessageExpiration"]) is True


def test_the_outputs_carry_the_queue_values_to_the_app() -> None:
    outputs = infra_file(SERVICE_BUS).outputs()
    assert text(outputs["eventsLockSeconds"]) == "eventsLockSeconds"
    assert text(outputs["eventsMaxDeliveryCount"]) == "eventsMaxDeliveryCount"
    assert "namespace.properties.serviceBusEndpoint" in text(outputs["fullyQualifiedNamespace"])
