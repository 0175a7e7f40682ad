"""A stand-in for the Functions host <-> Python worker protocol messages (`FunctionRpc.proto`).

The worker library (`azure_functions_runtime`) does not import protobuf classes itself: the
host's proxy worker hands it the generated module as `request.properties["protos"]`, and the
library builds its responses with it (`protos.WorkerInitResponse(...)`) and reads requests
through plain attribute access and `WhichOneof`. Those generated classes are not published in
a usable form, so these are small classes with the same names, fields, enum values and proto3
behaviour the library relies on:

- keyword construction; an unknown field name is an error; `None` leaves a field unset;
- an unset field reads as its default: `""`, `0`, `False`, an empty list or dict, and for a
  message field an empty message (so `request.trace_context.trace_parent` is `""`);
- enum fields take the value or the label (`retry_strategy="exponential_backoff"`), and
  nested enum values are plain `int` class attributes (`BindingInfo.out`,
  `StatusResult.Success`), as in generated code, where the library compares them with `is`;
- `WhichOneof(group)` names the member of a oneof that is set, or returns `None`.

Field names and numbers follow `src/proto/FunctionRpc.proto` and `shared/NullableTypes.proto`
of github.com/Azure/azure-functions-language-worker-protobuf (vendored by the worker under
`azure_functions_worker/protos/_src`). Only the messages the worker library builds or reads
are here; wire encoding is not needed, since nothing leaves the process.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "BindingInfo",
    "CollectionBytes",
    "CollectionDouble",
    "CollectionSInt64",
    "CollectionString",
    "FunctionEnvironmentReloadResponse",
    "FunctionLoadRequest",
    "FunctionLoadResponse",
    "FunctionMetadataResponse",
    "FunctionsMetadataRequest",
    "InvocationRequest",
    "InvocationResponse",
    "Message",
    "NullableBool",
    "NullableDouble",
    "NullableString",
    "NullableTimestamp",
    "ParameterBinding",
    "RetryContext",
    "RpcException",
    "RpcFunctionMetadata",
    "RpcHttp",
    "RpcHttpCookie",
    "RpcRetryOptions",
    "RpcTraceContext",
    "StatusResult",
    "StreamingMessage",
    "Timestamp",
    "TypedData",
    "WorkerInitRequest",
    "WorkerInitResponse",
    "WorkerMetadata",
]


@dataclass(frozen=True, slots=True)
class Field:
    """One field: how to make its default, and the labels it accepts if it is an enum."""

    default: Callable[[], Any]
    labels: Mapping[str, int] | None = None


def scalar(value: object) -> Field:
    return Field(lambda: value)


def repeated() -> Field:
    return Field(list)


def mapping() -> Field:
    return Field(dict)


def message(name: str) -> Field:
    """A message field, by class name (the class may be defined further down)."""
    return Field(lambda: globals()[name]())


def enum_of(values: type[enum.IntEnum]) -> Field:
    return Field(lambda: 0, {member.name: int(member) for member in values})


class Message:
    """Proto3 semantics over a dict of the fields that were set."""

    FIELDS: ClassVar[Mapping[str, Field]] = {}
    ONEOFS: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def __init__(self, **values: Any) -> None:
        set_values: dict[str, Any] = {}
        for name, value in values.items():
            field = self.FIELDS.get(name)
            if field is None:
                raise ValueError(f'Protocol message {type(self).__name__} has no "{name}" field.')
            if value is None:
                continue  # protobuf's constructors treat None as "not set"
            if field.labels is not None and isinstance(value, str):
                if value not in field.labels:
                    raise ValueError(f"unknown enum label {value!r} for {type(self).__name__}.{name}")
                value = field.labels[value]
            set_values[name] = value
        for group, members in self.ONEOFS.items():
            chosen = [member for member in members if member in set_values]
            if len(chosen) > 1:
                raise ValueError(f"{type(self).__name__}: more than one member of oneof {group!r} set: {chosen}")
        object.__setattr__(self, "_values", set_values)
        object.__setattr__(self, "_defaults", {})

    def __getattr__(self, name: str) -> Any:
        field = type(self).FIELDS.get(name)
        if field is None:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        values: dict[str, Any] = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        # An unset field reads as its default without becoming set (WhichOneof and HasField
        # still say unset); the same default object comes back on every read.
        defaults: dict[str, Any] = object.__getattribute__(self, "_defaults")
        if name not in defaults:
            defaults[name] = field.default()
        return defaults[name]

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in type(self).FIELDS:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        self._values[name] = value

    def WhichOneof(self, group: str) -> str | None:  # noqa: N802  # the protobuf API's name
        """The member of `group` that is set, or None."""
        members = self.ONEOFS.get(group)
        if members is None:
            raise ValueError(f"{type(self).__name__} has no oneof {group!r}")
        values: dict[str, Any] = object.__getattribute__(self, "_values")
        return next((member for member in members if member in values), None)

    def HasField(self, name: str) -> bool:  # noqa: N802  # the protobuf API's name
        return name in object.__getattribute__(self, "_values")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        mine: dict[str, Any] = object.__getattribute__(self, "_values")
        theirs: dict[str, Any] = object.__getattribute__(other, "_values")
        return mine == theirs

    __hash__ = None  # type: ignore[assignment]  # mutable, as protobuf messages are

    def __repr__(self) -> str:
        values: dict[str, Any] = object.__getattribute__(self, "_values")
        inner = ", ".join(f"{name}={value!r}" for name, value in values.items())
        return f"{type(self).__name__}({inner})"


# --- shared/NullableTypes.proto and google.protobuf.Timestamp ---------------------------


class Timestamp(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {"seconds": scalar(0), "nanos": scalar(0)}


class NullableString(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {"value": scalar("")}
    ONEOFS: ClassVar[Mapping[str, tuple[str, ...]]] = {"string": ("value",)}


class NullableDouble(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {"value": scalar(0.0)}
    ONEOFS: ClassVar[Mapping[str, tuple[str, ...]]] = {"double": ("value",)}


class NullableBool(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {"value": scalar(False)}
    ONEOFS: ClassVar[Mapping[str, tuple[str, ...]]] = {"bool": ("value",)}


class NullableTimestamp(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {"value": message("Timestamp")}
    ONEOFS: ClassVar[Mapping[str, tuple[str, ...]]] = {"timestamp": ("value",)}


# --- results and errors -------------------------------------------------------------------


class RpcException(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "source": scalar(""),
        "stack_trace": scalar(""),
        "message": scalar(""),
        "is_user_exception": scalar(False),
        "type": scalar(""),
    }


class _Status(enum.IntEnum):
    Failure = 0
    Success = 1
    Cancelled = 2


class StatusResult(Message):
    Status = _Status
    Failure, Success, Cancelled = (int(member) for member in _Status)
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "status": enum_of(_Status),
        "result": scalar(""),
        "exception": message("RpcException"),
        "logs": repeated(),
    }


# --- typed data -----------------------------------------------------------------------------


class CollectionString(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {"string": repeated()}


class CollectionBytes(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {"bytes": repeated()}


class CollectionDouble(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {"double": repeated()}


class CollectionSInt64(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {"sint64": repeated()}


_TYPED_DATA_MEMBERS = (
    "string",
    "json",
    "bytes",
    "stream",
    "http",
    "int",
    "double",
    "collection_bytes",
    "collection_string",
    "collection_double",
    "collection_sint64",
    "model_binding_data",
    "collection_model_binding_data",
)


class TypedData(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "string": scalar(""),
        "json": scalar(""),
        "bytes": scalar(b""),
        "stream": scalar(b""),
        "http": message("RpcHttp"),
        "int": scalar(0),
        "double": scalar(0.0),
        "collection_bytes": message("CollectionBytes"),
        "collection_string": message("CollectionString"),
        "collection_double": message("CollectionDouble"),
        "collection_sint64": message("CollectionSInt64"),
        # Deferred (SDK-type) bindings only; this app declares none.
        "model_binding_data": scalar(None),
        "collection_model_binding_data": scalar(None),
    }
    ONEOFS: ClassVar[Mapping[str, tuple[str, ...]]] = {"data": _TYPED_DATA_MEMBERS}


# `None` is a keyword, so this enum is built with the functional API; the library reads
# `getattr(protos.RpcHttpCookie.SameSite, "None")`.
SameSite = enum.IntEnum("SameSite", {"None": 0, "Lax": 1, "Strict": 2, "ExplicitNone": 3})


class RpcHttpCookie(Message):
    SameSite = SameSite
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "name": scalar(""),
        "value": scalar(""),
        "domain": message("NullableString"),
        "path": message("NullableString"),
        "expires": message("NullableTimestamp"),
        "secure": message("NullableBool"),
        "http_only": message("NullableBool"),
        "same_site": enum_of(SameSite),
        "max_age": message("NullableDouble"),
    }


class RpcHttp(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "method": scalar(""),
        "url": scalar(""),
        "headers": mapping(),
        "body": message("TypedData"),
        "params": mapping(),
        "status_code": scalar(""),
        "query": mapping(),
        "enable_content_negotiation": scalar(False),
        "rawBody": message("TypedData"),
        "identities": repeated(),
        "cookies": repeated(),
        "nullable_headers": mapping(),
        "nullable_params": mapping(),
        "nullable_query": mapping(),
    }


# --- start-up, indexing and loading --------------------------------------------------------


class WorkerInitRequest(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "host_version": scalar(""),
        "capabilities": mapping(),
        "log_categories": mapping(),
        "worker_directory": scalar(""),
        "function_app_directory": scalar(""),
    }


class WorkerMetadata(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "runtime_name": scalar(""),
        "runtime_version": scalar(""),
        "worker_version": scalar(""),
        "worker_bitness": scalar(""),
        "custom_properties": mapping(),
    }


class WorkerInitResponse(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "worker_version": scalar(""),
        "capabilities": mapping(),
        "result": message("StatusResult"),
        "worker_metadata": message("WorkerMetadata"),
    }


class FunctionEnvironmentReloadResponse(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "worker_metadata": message("WorkerMetadata"),
        "capabilities": mapping(),
        "result": message("StatusResult"),
    }


class _Direction(enum.IntEnum):
    # `in` is a keyword too: the members are reached as BindingInfo.in_ / getattr(..., "in").
    in_ = 0
    out = 1
    inout = 2


class _DataType(enum.IntEnum):
    undefined = 0
    string = 1
    binary = 2
    stream = 3


class BindingInfo(Message):
    Direction = _Direction
    DataType = _DataType
    out, inout = int(_Direction.out), int(_Direction.inout)
    undefined, string, binary, stream = (int(member) for member in _DataType)
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "type": scalar(""),
        "direction": Field(lambda: 0, {"in": 0, "out": 1, "inout": 2}),
        "data_type": enum_of(_DataType),
        "properties": mapping(),
    }


setattr(BindingInfo, "in", int(_Direction.in_))  # `BindingInfo.in`, as in generated code


class _RetryStrategy(enum.IntEnum):
    exponential_backoff = 0
    fixed_delay = 1


class RpcRetryOptions(Message):
    RetryStrategy = _RetryStrategy
    exponential_backoff, fixed_delay = (int(member) for member in _RetryStrategy)
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "max_retry_count": scalar(0),
        # google.protobuf.Duration fields; protobuf 5 takes a datetime.timedelta for them.
        "delay_interval": scalar(None),
        "minimum_interval": scalar(None),
        "maximum_interval": scalar(None),
        "retry_strategy": enum_of(_RetryStrategy),
    }


class RpcFunctionMetadata(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "name": scalar(""),
        "directory": scalar(""),
        "script_file": scalar(""),
        "entry_point": scalar(""),
        "bindings": mapping(),
        "is_proxy": scalar(False),
        "status": message("StatusResult"),
        "language": scalar(""),
        "raw_bindings": repeated(),
        "function_id": scalar(""),
        "managed_dependency_enabled": scalar(False),
        "retry_options": message("RpcRetryOptions"),
        "properties": mapping(),
    }


class FunctionsMetadataRequest(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {"function_app_directory": scalar("")}


class FunctionMetadataResponse(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "function_metadata_results": repeated(),
        "result": message("StatusResult"),
        "use_default_metadata_indexing": scalar(False),
    }


class FunctionLoadRequest(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "function_id": scalar(""),
        "metadata": message("RpcFunctionMetadata"),
        "managed_dependency_enabled": scalar(False),
    }


class FunctionLoadResponse(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "function_id": scalar(""),
        "result": message("StatusResult"),
        "is_dependency_downloaded": scalar(False),
    }


# --- invocation -------------------------------------------------------------------------------


class ParameterBinding(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "name": scalar(""),
        "data": message("TypedData"),
        "rpc_shared_memory": scalar(None),
    }
    ONEOFS: ClassVar[Mapping[str, tuple[str, ...]]] = {"rpc_data": ("data", "rpc_shared_memory")}


class RpcTraceContext(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "trace_parent": scalar(""),
        "trace_state": scalar(""),
        "attributes": mapping(),
    }


class RetryContext(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "retry_count": scalar(0),
        "max_retry_count": scalar(0),
        "exception": message("RpcException"),
    }


class InvocationRequest(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "invocation_id": scalar(""),
        "function_id": scalar(""),
        "input_data": repeated(),
        "trigger_metadata": mapping(),
        "trace_context": message("RpcTraceContext"),
        "retry_context": message("RetryContext"),
    }


class InvocationResponse(Message):
    FIELDS: ClassVar[Mapping[str, Field]] = {
        "invocation_id": scalar(""),
        "output_data": repeated(),
        "return_value": message("TypedData"),
        "result": message("StatusResult"),
    }


class StreamingMessage(Message):
    """The envelope every host request arrives in; the library reads `request.request.<kind>`."""

    FIELDS: ClassVar[Mapping[str, Field]] = {
        "request_id": scalar(""),
        "worker_init_request": message("WorkerInitRequest"),
        "functions_metadata_request": message("FunctionsMetadataRequest"),
        "function_load_request": message("FunctionLoadRequest"),
        "invocation_request": message("InvocationRequest"),
    }
    ONEOFS: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "content": (
            "worker_init_request",
            "functions_metadata_request",
            "function_load_request",
            "invocation_request",
        )
    }
