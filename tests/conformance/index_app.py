"""Ask the Python worker library what it makes of a function app folder, and print its verdict.

    python -m tests.conformance.index_app APP_DIR

Runs the host's start-up sequence (init, metadata, one load per function) against `APP_DIR`
in this process and prints one JSON object: the init status and exception message, and for
each function the worker indexed, its bindings and load status. Exits 0 when the worker
would serve every function, 1 otherwise. Each run needs a fresh process: the worker imports
`function_app` once and keeps its registry for the life of the process, as on Azure.

Run it from the repository root under the deployment Python (`.venv-deploy/bin/python`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from tests.conformance import protos
from tests.conformance.worker import Worker, app_process

__all__ = ["index", "main"]

REPOSITORY = Path(__file__).resolve().parents[2]


def _status(result: Any) -> str:
    return protos.StatusResult.Status(result.status).name


async def index(app_dir: Path) -> dict[str, Any]:
    """The worker's verdict on `app_dir`, as a JSON-ready dict."""
    worker = Worker(app_dir)
    try:
        init = await worker.init()
        report: dict[str, Any] = {
            "init": {"status": _status(init.result), "exception": init.result.exception.message},
            "functions": [],
        }
        metadata = await worker.metadata()
        for function in metadata.function_metadata_results or []:
            loaded = await worker.load(function)
            report["functions"].append(
                {
                    "name": function.name,
                    "bindings": [json.loads(raw) for raw in function.raw_bindings],
                    "load": {"status": _status(loaded.result), "exception": loaded.result.exception.message},
                }
            )
        return report
    finally:
        worker.stop()


def servable(report: dict[str, Any]) -> bool:
    """Whether the host would serve every function of the report."""
    return (
        report["init"]["status"] == "Success"
        and bool(report["functions"])
        and all(function["load"]["status"] == "Success" for function in report["functions"])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("app_dir", type=Path, help="the function app folder (holding function_app.py)")
    arguments = parser.parse_args(argv)
    app_dir = arguments.app_dir.resolve()
    with app_process(app_dir, REPOSITORY):
        report = asyncio.run(index(app_dir))
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if servable(report) else 1


if __name__ == "__main__":
    sys.exit(main())
