"""Which of the app's functions the local host can serve, and why it cannot serve the others.

HTTP functions are always served. A Service Bus, Cosmos DB or timer trigger is served only
with the embedded backend, from the embedded queue, the embedded store's change feed and the
local clock; with the Azure backend those run on Azure (a local copy would be a second
consumer). `AzureWebJobs.<name>.Disabled` turns a function off, and `%NAME%` binding
expressions resolve from app settings, as on Azure.
"""

from __future__ import annotations

from collections.abc import Mapping

from cloudscale_local.host.functions import ChangeFeedFunction, FunctionIndex, ServiceBusFunction
from cloudscale_local.host.ncrontab import ScheduleError
from cloudscale_local.host.timer_trigger import ServableTimer, parse_schedule
from shared.settings import Settings, SettingsError

__all__ = [
    "is_disabled",
    "resolve_app_setting",
    "servable_feed_functions",
    "servable_queue_functions",
    "servable_timer_functions",
]


def servable_queue_functions(
    index: FunctionIndex, settings: Settings, environ: Mapping[str, str], *, embedded: bool
) -> tuple[list[ServiceBusFunction], dict[str, str]]:
    """The Service Bus functions the embedded queue can feed, and why the others cannot be fed."""
    servable: list[ServiceBusFunction] = []
    unservable: dict[str, str] = {}
    for function in index.service_bus:
        queue = resolve_app_setting(function.queue_name, environ)
        if is_disabled(function.name, environ):
            unservable[function.name] = f"disabled by AzureWebJobs.{function.name}.Disabled"
        elif not embedded:
            unservable[function.name] = "Service Bus trigger: the azure backend's queue is consumed on Azure"
        elif queue != settings.events_queue:
            unservable[function.name] = f"Service Bus trigger on {queue!r}: only {settings.events_queue!r} is embedded"
        else:
            servable.append(function)
    return servable, unservable


def servable_feed_functions(
    index: FunctionIndex, settings: Settings, environ: Mapping[str, str], *, embedded: bool
) -> tuple[list[ChangeFeedFunction], dict[str, str]]:
    """The change-feed functions the embedded event store can feed, and why the others cannot be fed."""
    servable: list[ChangeFeedFunction] = []
    unservable: dict[str, str] = {}
    for function in index.change_feed:
        container = resolve_app_setting(function.container, environ)
        if is_disabled(function.name, environ):
            unservable[function.name] = f"disabled by AzureWebJobs.{function.name}.Disabled"
        elif not embedded:
            unservable[function.name] = "Cosmos DB trigger: the azure backend's change feed is consumed on Azure"
        elif container != settings.cosmos_container:
            unservable[function.name] = (
                f"Cosmos DB trigger on {container!r}: only {settings.cosmos_container!r} is embedded"
            )
        else:
            servable.append(function)
    return servable, unservable


def servable_timer_functions(
    index: FunctionIndex, settings: Settings, environ: Mapping[str, str], *, embedded: bool
) -> tuple[list[ServableTimer], dict[str, str]]:
    """The timer functions the local host runs, with their schedules, and why the others do not run."""
    servable: list[ServableTimer] = []
    unservable: dict[str, str] = {}
    for function in index.timer:
        if is_disabled(function.name, environ):
            unservable[function.name] = f"disabled by AzureWebJobs.{function.name}.Disabled"
        elif not embedded:
            # On Azure one instance runs the timer under a lock in the app's storage; a local
            # copy outside that lock would be a second run.
            unservable[function.name] = "timer trigger: with the azure backend the schedule runs on Azure"
        else:
            try:
                servable.append((function, parse_schedule(resolve_app_setting(function.schedule, environ))))
            except ScheduleError as error:
                unservable[function.name] = f"timer trigger: {error}"
    return servable, unservable


def is_disabled(function_name: str, environ: Mapping[str, str]) -> bool:
    """`AzureWebJobs.<name>.Disabled` set to true turns a function off, as on Azure."""
    return environ.get(f"AzureWebJobs.{function_name}.Disabled", "").strip().lower() in ("true", "1")


def resolve_app_setting(expression: str, environ: Mapping[str, str]) -> str:
    """Resolve a `%NAME%` binding expression the way the Functions host does, from app settings.

    A setting the environment leaves unset takes the app's own default for it, so the local
    host needs no extra configuration.
    """
    if not (expression.startswith("%") and expression.endswith("%") and len(expression) > 2):
        return expression
    name = expression[1:-1]
    if environ.get(name):
        return environ[name]
    for model_field in Settings.model_fields.values():
        if model_field.alias == name and isinstance(model_field.default, str):
            return model_field.default
    raise SettingsError(f"{name} is not set (a function binding refers to %{name}%)")
