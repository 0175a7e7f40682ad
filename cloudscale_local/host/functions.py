"""The functions a `FunctionApp` registered, sorted by what the local host can drive.

`FunctionApp.get_functions()` may be called only once per app (a second call reports every
function as a duplicate), so the index is built once and cached per app object.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import azure.functions as func
from opentelemetry import context as otel_context

from cloudscale_local.host.feed_timings import FeedTimings
from cloudscale_local.host.host_config import parse_timespan
from cloudscale_local.host.invocation import bare_context
from cloudscale_local.host.routing import RouteTemplate
from cloudscale_local.host.worker_rules import check_function

__all__ = [
    "ChangeFeedFunction",
    "FunctionIndex",
    "HttpFunction",
    "RetryPolicy",
    "ServiceBusFunction",
    "TimerFunction",
    "index_functions",
]

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@dataclass(frozen=True, slots=True)
class HttpFunction:
    name: str
    route: RouteTemplate
    methods: tuple[str, ...]
    handler: Callable[..., Any]
    argument: str
    """The parameter the request is passed as (the trigger binding's name)."""
    auth_level: str = "FUNCTION"
    """`ANONYMOUS`, `FUNCTION` or `ADMIN`, as registered (the app's default when the route sets none).
    The local host checks no key, as Core Tools does; it serves `ADMIN` to loopback peers only
    (`cloudscale_local.host.admin_access`)."""

    async def invoke(self, request: func.HttpRequest, context: func.Context | None = None) -> func.HttpResponse:
        """Call the function; a synchronous one runs on a worker thread, as the Python worker does."""
        response: func.HttpResponse = await _call(self.handler, {self.argument: request}, self.name, context)
        return response


@dataclass(frozen=True, slots=True)
class ServiceBusFunction:
    name: str
    queue_name: str
    """As registered: may be an app-setting expression such as `%CLOUDSCALE_EVENTS_QUEUE%`."""
    connection: str
    handler: Callable[..., Any]
    argument: str
    many: bool = False
    """Cardinality many: the function takes a list of messages."""

    async def invoke(self, messages: Sequence[func.ServiceBusMessage], context: func.Context | None = None) -> None:
        """Call the function as the Python worker does: with the list (cardinality many) or its one message."""
        if not self.many and len(messages) != 1:
            raise ValueError(f"{self.name} takes one message per invocation, not {len(messages)}")
        argument: object = list(messages) if self.many else messages[0]
        await _call(self.handler, {self.argument: argument}, self.name, context)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A function's `@retry` policy (exponential backoff or fixed delay), in seconds."""

    strategy: str
    max_retry_count: int
    """-1: retry indefinitely."""
    minimum_interval: float = 1.0
    maximum_interval: float = 60.0
    delay_interval: float = 1.0

    def delay(self, retry: int, jitter: float | None = None) -> float:
        """How long to wait before retry number `retry` (1 for the first).

        Exponential backoff is the host's randomized one (`RandomizedExponentialBackoffStrategy`
        in the WebJobs SDK): the first retry waits `minimum_interval`; retry n waits
        `minimum_interval` plus `jitter` x 2^(n-2) x `minimum_interval`, where `jitter` is drawn
        from [0.8, 1.2) unless given; never more than `maximum_interval`.
        """
        if self.strategy == "fixed_delay":
            return self.delay_interval
        if retry <= 1:
            return float(min(self.maximum_interval, self.minimum_interval))
        factor = random.uniform(0.8, 1.2) if jitter is None else jitter
        return float(min(self.maximum_interval, self.minimum_interval * (1 + factor * 2 ** (retry - 2))))


@dataclass(frozen=True, slots=True)
class ChangeFeedFunction:
    name: str
    database: str
    container: str
    """As registered: may be an app-setting expression such as `%CLOUDSCALE_COSMOS_CONTAINER%`."""
    max_items: int
    retry: RetryPolicy | None
    handler: Callable[..., Any]
    argument: str
    timings: FeedTimings = field(default_factory=FeedTimings)
    """The binding's lease and polling intervals (the change feed processor's defaults when unset)."""

    async def invoke(self, documents: func.DocumentList, context: func.Context | None = None) -> None:
        """Call the function with one batch of documents."""
        await _call(self.handler, {self.argument: documents}, self.name, context)


async def _call(
    handler: Callable[..., Any], arguments: dict[str, object], name: str, context: func.Context | None
) -> Any:
    """Call `handler` as the Python worker does.

    With `context` too when it has a parameter of that name; a synchronous handler on a
    worker thread. Under an empty OpenTelemetry context: the function runs in a worker process
    of its own on Azure, where nothing of the host's is current, so any trace it continues
    must come from `context.trace_context`.
    """
    if "context" not in arguments and _takes_context(handler):
        arguments = {**arguments, "context": context or bare_context(name)}
    token = otel_context.attach(otel_context.Context())
    try:
        if inspect.iscoroutinefunction(handler):
            return await handler(**arguments)
        # to_thread copies the (now empty) context into the thread.
        return await asyncio.to_thread(handler, **arguments)
    finally:
        otel_context.detach(token)


@cache
def _takes_context(handler: Callable[..., Any]) -> bool:
    """The worker passes the invocation context to a parameter named `context` that no binding uses."""
    return "context" in inspect.signature(handler).parameters


@dataclass(frozen=True, slots=True)
class TimerFunction:
    name: str
    schedule: str
    """As registered: an NCRONTAB expression, or an app-setting expression such as `%SCHEDULE%`."""
    run_on_startup: bool
    use_monitor: bool
    """As registered (default true); the host turns it off for a schedule that fires more than once a minute."""
    retry: RetryPolicy | None
    handler: Callable[..., Any]
    argument: str

    async def invoke(self, request: func.TimerRequest, context: func.Context | None = None) -> None:
        """Call the function with its timer request."""
        await _call(self.handler, {self.argument: request}, self.name, context)


@dataclass(frozen=True, slots=True)
class FunctionIndex:
    http: list[HttpFunction] = field(default_factory=list)
    service_bus: list[ServiceBusFunction] = field(default_factory=list)
    change_feed: list[ChangeFeedFunction] = field(default_factory=list)
    timer: list[TimerFunction] = field(default_factory=list)
    other: dict[str, str] = field(default_factory=dict)
    """Functions whose trigger the host does not drive: name -> trigger type."""


_indexes: dict[int, tuple[func.FunctionApp, FunctionIndex]] = {}


def index_functions(app: func.FunctionApp) -> FunctionIndex:
    """Sort `app`'s functions by trigger type (cached per app).

    Raises `FunctionLoadError` (`cloudscale_local.host.worker_rules`) when the Python worker would refuse
    any function: the Functions host then serves none of them, so neither does the local host.
    """
    cached = _indexes.get(id(app))
    if cached is not None and cached[0] is app:
        return cached[1]
    index = FunctionIndex()
    functions = app.get_functions()
    for function in functions:
        check_function(function)
    for function in functions:
        trigger = function.get_trigger()
        name = function.get_function_name() or function.get_user_function().__name__
        if trigger is None:
            index.other[name] = "no trigger"
            continue
        if trigger.get_binding_name() == "httpTrigger":
            spec = trigger.get_dict_repr()
            methods = tuple(str(getattr(m, "value", m)).upper() for m in spec.get("methods") or ALL_METHODS)
            index.http.append(
                HttpFunction(
                    name=name,
                    route=RouteTemplate.compile(str(spec.get("route") or name)),
                    methods=methods,
                    handler=function.get_user_function(),
                    argument=spec["name"],
                    auth_level=str(
                        getattr(spec.get("authLevel"), "value", spec.get("authLevel")) or "FUNCTION"
                    ).upper(),
                )
            )
        elif trigger.get_binding_name() == "cosmosDBTrigger":
            spec = trigger.get_dict_repr()
            index.change_feed.append(
                ChangeFeedFunction(
                    name=name,
                    database=str(spec["databaseName"]),
                    container=str(spec["containerName"]),
                    max_items=int(spec.get("maxItemsPerInvocation") or 100),
                    retry=_retry_policy(function.get_settings_dict("retry_policy")),
                    handler=function.get_user_function(),
                    argument=spec["name"],
                    timings=FeedTimings.from_binding(spec),
                )
            )
        elif trigger.get_binding_name() == "serviceBusTrigger":
            spec = trigger.get_dict_repr()
            if spec.get("queueName"):
                index.service_bus.append(
                    ServiceBusFunction(
                        name=name,
                        queue_name=str(spec["queueName"]),
                        connection=str(spec.get("connection") or ""),
                        handler=function.get_user_function(),
                        argument=spec["name"],
                        many=str(getattr(spec.get("cardinality"), "value", spec.get("cardinality")) or "one").lower()
                        == "many",
                    )
                )
            else:
                index.other[name] = "serviceBusTrigger (topic subscriptions are not served locally)"
        elif trigger.get_binding_name() == "timerTrigger":
            spec = trigger.get_dict_repr()
            index.timer.append(
                TimerFunction(
                    name=name,
                    schedule=str(spec["schedule"]),
                    run_on_startup=bool(spec.get("runOnStartup") or False),
                    use_monitor=bool(spec.get("useMonitor", True)),
                    retry=_retry_policy(function.get_settings_dict("retry_policy")),
                    handler=function.get_user_function(),
                    argument=spec["name"],
                )
            )
        else:
            index.other[name] = trigger.get_binding_name()
    _indexes[id(app)] = (app, index)
    return index


def _retry_policy(setting: dict[str, Any] | None) -> RetryPolicy | None:
    if not setting:
        return None
    return RetryPolicy(
        strategy=str(setting.get("strategy", "exponential_backoff")),
        max_retry_count=int(setting.get("max_retry_count", 0)),
        minimum_interval=_seconds(setting.get("minimum_interval"), 1.0),
        maximum_interval=_seconds(setting.get("maximum_interval"), 60.0),
        delay_interval=_seconds(setting.get("delay_interval"), 1.0),
    )


def _seconds(timespan: object, default: float) -> float:
    if not timespan:
        return default
    return parse_timespan(str(timespan))
