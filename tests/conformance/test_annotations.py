"""The worker is the judge of what loads: a builtin generic batch annotation is refused, and with it
the whole app; the same function annotated with `typing.List` loads.

Each app is indexed in its own process (`tests.conformance.index_app`): the worker imports
`function_app` once per process, as each worker process on Azure does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conformance.conftest import REPOSITORY

APPS = Path(__file__).resolve().parent / "apps"


def index(app: str) -> tuple[int, dict[str, Any]]:
    """The worker's verdict on `apps/<app>` and the exit status of the indexing run."""
    completed = subprocess.run(
        [sys.executable, "-m", "tests.conformance.index_app", str(APPS / app)],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.stdout, completed.stderr
    return completed.returncode, json.loads(completed.stdout)


def test_a_builtin_generic_batch_annotation_fails_the_whole_app() -> None:
    code, report = index("builtin_generic")

    assert code == 1
    assert report["init"]["status"] == "Failure"
    message = report["init"]["exception"]
    assert message.startswith("FunctionLoadError: cannot load the process_event function")
    assert "binding messages has invalid non-type annotation list[" in message
    assert report["functions"] == [], "a failed init leaves the host nothing to serve"


def test_the_same_function_annotated_with_typing_list_loads() -> None:
    code, report = index("typing_list")

    assert code == 0, report
    assert [function["name"] for function in report["functions"]] == ["process_event"]
    assert report["functions"][0]["load"]["status"] == "Success"
    assert report["functions"][0]["bindings"][0]["cardinality"] == "MANY"
