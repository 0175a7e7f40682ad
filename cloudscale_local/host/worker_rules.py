"""The load-time checks the Python worker applies to each function, applied by the local host too.

On Azure the Python worker (`azure-functions-runtime` for Python 3.13+; the same checks live
in `azure_functions_worker` for older versions) registers each indexed function in its
`Registry.add_indexed_function` / `validate_function_params`, and refuses one that breaks
these rules with a `FunctionLoadError`. One refused function fails the whole metadata
response: the host then serves no function at all. So the local host refuses to start on
the same faults, instead of serving an app that Azure would not.

The rules checked here (all from that worker code):

- the parameter annotations must resolve (`typing.get_type_hints`);
- no binding has direction "inout"; a `$return` binding has direction "out";
- every parameter is a binding, except `context`, which must then be annotated with a class
  named `Context`; every binding other than `$return` is a parameter;
- a binding's annotation is a class or a `typing` generic such as `typing.List[...]`; a
  builtin generic (`list[...]`), a union or an `X | None` is an "invalid non-type annotation";
- an "out" binding is annotated `func.Out[...]`, and only an "out" binding is.

What is not repeated here: the per-binding-type check of which Python types a trigger can
convert to. The conformance tier (`tests/conformance`) indexes the app with the real worker
library, which is the judge of everything.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from typing import Any

import azure.functions as func
from azure.functions.decorators.core import BindingDirection

__all__ = ["FunctionLoadError", "check_function"]

# A binding's `direction` is the enum's value, as the worker's protocol carries it.
OUT = BindingDirection.OUT.value
INOUT = BindingDirection.INOUT.value


class FunctionLoadError(RuntimeError):
    """The worker would refuse to load this function (and so serve no function of the app)."""

    def __init__(self, function_name: str, problem: str) -> None:
        """`problem` says what is wrong, in the worker's words where it has them."""
        super().__init__(f"cannot load the {function_name} function: {problem}")
        self.function_name = function_name


def check_function(function: func.decorators.function_app.Function) -> None:
    """Raise `FunctionLoadError` if the Python worker would refuse `function`."""
    handler = function.get_user_function()
    name = function.get_function_name() or handler.__name__
    try:
        annotations = typing.get_type_hints(handler)
    except Exception as exc:  # the worker lets any resolution error fail the load
        raise FunctionLoadError(name, f"its annotations do not resolve: {exc}") from None
    parameters = dict(inspect.signature(handler).parameters)
    bound: dict[str, Any] = {}
    for binding in function.get_bindings():
        if binding.direction == INOUT:
            raise FunctionLoadError(name, '"inout" bindings are not supported')
        if binding.name == "$return":
            if binding.direction != OUT:
                raise FunctionLoadError(name, '"$return" binding must have direction set to "out"')
            continue
        bound[binding.name] = binding
    _check_context(name, parameters, bound, annotations)
    missing = set(parameters) - set(bound)
    if missing:
        raise FunctionLoadError(name, f"parameters declared in Python but not as bindings: {sorted(missing)}")
    extra = set(bound) - set(parameters)
    if extra:
        raise FunctionLoadError(name, f"bindings that are not parameters in Python: {sorted(extra)}")
    for parameter in parameters:
        if parameter in annotations:
            _check_annotation(name, parameter, annotations[parameter], bound[parameter].direction)


def _check_context(
    name: str, parameters: dict[str, inspect.Parameter], bound: dict[str, Any], annotations: dict[str, Any]
) -> None:
    if "context" not in parameters or "context" in bound:
        return
    parameters.pop("context")
    annotation = annotations.get("context")
    if annotation is not None and not (isinstance(annotation, type) and annotation.__name__ == "Context"):
        raise FunctionLoadError(
            name, f'the "context" parameter is expected to be of type azure.functions.Context, got {annotation!r}'
        )


def _check_annotation(name: str, parameter: str, annotation: Any, direction: int) -> None:
    is_out = typing.get_origin(annotation) is func.Out or annotation is func.Out
    python_type = annotation
    if is_out:
        arguments = typing.get_args(annotation)
        if len(arguments) != 1:
            raise FunctionLoadError(name, f"binding {parameter} has invalid Out annotation {annotation!r}")
        python_type = arguments[0]
    if not (isinstance(python_type, type) or _is_typing_generic(python_type)):
        raise FunctionLoadError(name, f"binding {parameter} has invalid non-type annotation {annotation!r}")
    if direction == OUT and not is_out:
        raise FunctionLoadError(
            name,
            f'binding {parameter} is declared to have the "out" direction, '
            "but its annotation in Python is not a subclass of azure.functions.Out",
        )
    if direction != OUT and is_out:
        raise FunctionLoadError(
            name,
            f'binding {parameter} is declared to have the "in" direction, '
            "but its annotation is azure.functions.Out in Python",
        )


def _is_typing_generic(annotation: Any) -> bool:
    """A subscripted `typing` generic such as `typing.List[X]`, as the worker's `is_generic_type` sees it.

    Not `list[X]` (a `types.GenericAlias`), and not the special forms the worker excludes:
    `Union`/`Optional`, `Tuple`, `Callable` and `ClassVar`.
    """
    if isinstance(annotation, types.GenericAlias | types.UnionType) or type(annotation).__module__ != "typing":
        return False
    origin = typing.get_origin(annotation)
    return origin is not None and origin not in _NOT_GENERIC


_NOT_GENERIC: tuple[Any, ...] = (typing.Union, tuple, typing.ClassVar, collections.abc.Callable)
