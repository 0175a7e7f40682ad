"""The app as Azure runs it: the deployment package, loaded by Microsoft's Python worker library.

This tier runs only under the deployment Python (`.venv-deploy`, built by `make conformance`
from `requirements.txt` alone plus the test runner), never in the development venv: the
main suite leaves `tests/conformance` out (`addopts` in pyproject.toml) and `make` runs it
on its own. One worker serves the whole session, as one worker process serves an instance.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conformance import protos
from tests.conformance.package import stage_package
from tests.conformance.worker import Worker, app_process

REPOSITORY = Path(__file__).resolve().parents[2]

APP_SETTINGS = {
    # The embedded backend (SQLite under CLOUDSCALE_DATA_DIR) stands in for Service Bus,
    # Table Storage, Cosmos DB and Data Explorer: the code paths under test are the worker's
    # and the function bodies', not the Azure SDKs'.
    "CLOUDSCALE_BACKEND": "embedded",
    "CLOUDSCALE_EVENTS_QUEUE": "events",
    "CLOUDSCALE_COSMOS_DATABASE": "cloudscale",
    "CLOUDSCALE_COSMOS_CONTAINER": "events",
    "FUNCTIONS_WORKER_RUNTIME": "python",
}
UNSET = ("APPLICATIONINSIGHTS_CONNECTION_STRING", "PYTHON_ENABLE_OPENTELEMETRY", "PYTHON_SCRIPT_FILE_NAME")


@dataclass
class DeployedApp:
    """The worker after start-up, with what it answered at each step."""

    worker: Worker
    package: Path
    data_dir: Path
    init: Any
    metadata: Any
    loads: dict[str, Any]

    @property
    def functions(self) -> dict[str, Any]:
        """The indexed functions' `RpcFunctionMetadata`, by name."""
        return {function.name: function for function in self.metadata.function_metadata_results or []}

    def function_id(self, name: str) -> str:
        if name not in self.functions:
            pytest.fail(f"the worker did not index {name}; init said: {self.init.result.exception.message}")
        return str(self.functions[name].function_id)

    def container(self) -> Any:
        """The app's own composition root, as the functions built it (imported from the package)."""
        return importlib.import_module("shared.bootstrap").get_container()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def deployed_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DeployedApp]:
    package = stage_package(REPOSITORY, tmp_path_factory.mktemp("site") / "wwwroot")
    data_dir = tmp_path_factory.mktemp("cloudscale-data")
    with pytest.MonkeyPatch.context() as env, app_process(package, REPOSITORY):
        for name, value in {**APP_SETTINGS, "CLOUDSCALE_DATA_DIR": str(data_dir)}.items():
            env.setenv(name, value)
        env.setenv("AzureWebJobsScriptRoot", str(package))
        for name in UNSET:
            env.delenv(name, raising=False)
        worker = Worker(package)
        try:
            init = await worker.init()
            metadata = await worker.metadata()
            loads = {
                function.name: await worker.load(function) for function in metadata.function_metadata_results or []
            }
            yield DeployedApp(worker, package, data_dir, init, metadata, loads)
        finally:
            bootstrap = sys.modules.get("shared.bootstrap")
            if bootstrap is not None:
                await bootstrap.close_container()
            worker.stop()


def succeeded(response: Any) -> bool:
    return bool(response.result.status == protos.StatusResult.Success)


def failure(response: Any) -> str:
    """The worker's exception message and stack, for an assertion message."""
    exception = response.result.exception
    return f"{exception.message}\n{exception.stack_trace}"
