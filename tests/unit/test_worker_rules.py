"""The local host refuses, at indexing, the functions the Python worker refuses to load."""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any

import azure.functions as func
import pytest

from cloudscale_local.host.functions import index_functions
from cloudscale_local.host.worker_rules import FunctionLoadError, _is_typing_generic


def app_with_queue_function(handler: Callable[..., Any], *, many: bool = True) -> func.FunctionApp:
    app = func.FunctionApp()
    app.function_name("process_event")(
        app.service_bus_queue_trigger(
            arg_name="messages",
            queue_name="events",
            connection="ServiceBusConnection",
            cardinality=func.Cardinality.MANY if many else func.Cardinality.ONE,
        )(handler)
    )
    return app


async def builtin_generic(messages: list[func.ServiceBusMessage]) -> None:
    """The annotation the worker refuses ("invalid non-type annotation")."""


async def typing_generic(messages: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
    """The annotation the worker accepts."""


async def optional_message(messages: func.ServiceBusMessage | None) -> None:
    """A union is no type either."""


async def unbound_parameter(messages: func.ServiceBusMessage, extra: str) -> None:
    """`extra` is no binding."""


async def misannotated_context(messages: func.ServiceBusMessage, context: str) -> None:
    """`context` must be azure.functions.Context."""


async def with_context(messages: func.ServiceBusMessage, context: func.Context) -> None:
    """An unbound `context` parameter is the invocation context."""


def test_a_builtin_generic_annotation_stops_the_whole_app_as_the_worker_does() -> None:
    app = app_with_queue_function(builtin_generic)
    with pytest.raises(FunctionLoadError, match=r"binding messages has invalid non-type annotation list\["):
        index_functions(app)


def test_a_typing_generic_annotation_loads() -> None:
    index = index_functions(app_with_queue_function(typing_generic))
    assert [function.name for function in index.service_bus] == ["process_event"]
    assert index.service_bus[0].many


@pytest.mark.parametrize(
    ("handler", "problem"),
    [
        (optional_message, "invalid non-type annotation"),
        (unbound_parameter, r"declared in Python but not as bindings: \['extra'\]"),
        (misannotated_context, "expected to be of type azure.functions.Context"),
    ],
)
def test_other_functions_the_worker_refuses(handler: Callable[..., Any], problem: str) -> None:
    with pytest.raises(FunctionLoadError, match=problem):
        index_functions(app_with_queue_function(handler, many=False))


def test_a_context_parameter_is_not_a_binding() -> None:
    index = index_functions(app_with_queue_function(with_context, many=False))
    assert [function.name for function in index.service_bus] == ["process_event"]


def test_the_app_itself_loads() -> None:
    import function_app

    index = index_functions(function_app.app)
    assert {function.name for function in index.http} >= {"ingest_events", "health", "openapi", "get_event"}
    assert [function.name for function in index.service_bus] == ["process_event"]


def test_the_local_indexer_agrees_with_the_worker_on_the_conformance_fixture_apps() -> None:
    # tests/conformance runs the same two apps through Microsoft's worker library
    from tests.conformance.apps.builtin_generic.function_app import app as refused
    from tests.conformance.apps.typing_list.function_app import app as accepted

    with pytest.raises(FunctionLoadError, match="invalid non-type annotation"):
        index_functions(refused)
    assert [function.name for function in index_functions(accepted).service_bus] == ["process_event"]


@pytest.mark.parametrize(
    ("annotation", "accepted"),
    [
        # what azure-functions-runtime 1.3.0's `isinstance(t, type) or is_generic_type(t)` says
        (typing.List[int], True),  # noqa: UP006
        (typing.Dict[str, int], True),  # noqa: UP006
        (typing.Iterable[int], True),
        (typing.Literal["a"], True),
        (func.Out[str], True),
        (list[int], False),
        (typing.Tuple[int], False),  # noqa: UP006
        (typing.Callable[[], int], False),
        (typing.Optional[int], False),  # noqa: UP045
        (int | None, False),
    ],
)
def test_which_annotations_count_as_types_is_the_workers_call(annotation: object, accepted: bool) -> None:
    assert (isinstance(annotation, type) or _is_typing_generic(annotation)) is accepted
