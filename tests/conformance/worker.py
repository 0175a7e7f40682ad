"""Drives Microsoft's Python worker library the way the Functions host's proxy worker does.

On Python 3.13+ the host starts a thin proxy worker (`workers/proxy_worker/dispatcher.py` in
github.com/Azure/azure-functions-python-worker) that receives the host's gRPC messages and
hands each one to the library, `azure_functions_runtime`, as a `WorkerRequest(name, request,
properties)`, where `request` is the whole `StreamingMessage` and, for the init request,
`properties` carries the generated protobuf module as `"protos"`. The sequence per worker is:
`start_threadpool_executor()`, `worker_init_request` (imports `function_app.py` from the
function app directory and indexes it), `functions_metadata_request`, one
`function_load_request` per function, then `invocation_request` per invocation.

`Worker` plays that part with `tests.conformance.protos` standing in for the generated module.
`app_process` prepares the process as the proxy worker's `DependencyManager` does: the
current directory is the app's folder and the folder is on `sys.path`; this repository's
root is taken off it, so only the deployment package can be imported.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure_functions_runtime as runtime

from tests.conformance import protos

__all__ = ["HOST_VERSION", "Worker", "WorkerRequest", "app_process"]

HOST_VERSION = "4.1044.0.0"
"""What the init request reports as the host's version (the worker only logs it)."""


@dataclass(slots=True)
class WorkerRequest:
    """What the proxy worker passes to the library: its `WorkerRequest` dataclass's fields."""

    name: str
    request: protos.StreamingMessage
    properties: dict[str, Any] | None = None


@contextlib.contextmanager
def app_process(app_dir: Path, repository: Path) -> Iterator[None]:
    """Run the block with `app_dir` as the current directory and on `sys.path`, and nothing
    from `repository` importable except through it; restore both afterwards."""
    saved_path, saved_cwd = list(sys.path), Path.cwd()
    root = repository.resolve()

    def is_repository(entry: str) -> bool:
        return Path(entry or saved_cwd).resolve() == root

    os.chdir(app_dir)
    sys.path[:] = [entry for entry in sys.path if not is_repository(entry)]
    sys.path.append(str(app_dir))
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path


class Worker:
    """One worker process's conversation with the host, from the host's side."""

    def __init__(self, app_dir: Path) -> None:
        self.app_dir = app_dir
        self._ids = itertools.count(1)

    def _message(self, **content: Any) -> protos.StreamingMessage:
        return protos.StreamingMessage(request_id=f"request-{next(self._ids)}", **content)

    async def init(self) -> Any:
        """`WorkerInitRequest`: the library imports and indexes the app. Returns its response."""
        runtime.start_threadpool_executor()
        message = self._message(
            worker_init_request=protos.WorkerInitRequest(
                host_version=HOST_VERSION, function_app_directory=str(self.app_dir), capabilities={}
            )
        )
        request = WorkerRequest("WorkerInitRequest", message, {"protos": protos, "host": "127.0.0.1"})
        return await runtime.worker_init_request(request)

    async def metadata(self) -> Any:
        """`FunctionsMetadataRequest`: the functions the init request indexed."""
        message = self._message(
            functions_metadata_request=protos.FunctionsMetadataRequest(function_app_directory=str(self.app_dir))
        )
        return await runtime.functions_metadata_request(WorkerRequest("WorkerMetadataRequest", message))

    async def load(self, metadata: Any) -> Any:
        """`FunctionLoadRequest` for one function of the metadata response."""
        message = self._message(
            function_load_request=protos.FunctionLoadRequest(function_id=metadata.function_id, metadata=metadata)
        )
        return await runtime.function_load_request(WorkerRequest("FunctionLoadRequest", message))

    async def invoke(
        self,
        function_id: str,
        inputs: Mapping[str, protos.TypedData],
        trigger_metadata: Mapping[str, protos.TypedData] | None = None,
    ) -> Any:
        """`InvocationRequest`: one invocation with its input bindings (the trigger's included)."""
        invocation_id = f"invocation-{next(self._ids)}"
        message = self._message(
            invocation_request=protos.InvocationRequest(
                invocation_id=invocation_id,
                function_id=function_id,
                input_data=[protos.ParameterBinding(name=name, data=data) for name, data in inputs.items()],
                trigger_metadata=dict(trigger_metadata or {}),
                trace_context=protos.RpcTraceContext(
                    trace_parent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                ),
            )
        )
        return await runtime.invocation_request(WorkerRequest("FunctionInvocationRequest", message))

    def stop(self) -> None:
        runtime.stop_threadpool_executor()
