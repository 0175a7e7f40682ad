"""The layering rules are contracts that `make lint` checks: breaking one fails the build."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "process", "changefeed", "privacy", "shared", "cloudscale_local")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    """The packages and the contracts, copied so that a test can break a rule in them."""
    for package in PACKAGES:
        shutil.copytree(REPOSITORY / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPOSITORY / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(REPOSITORY)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "forbidden_import", "contract"),
    [
        ("shared/domain/events.py", "import shared.settings", "The domain is plain Python"),
        ("shared/domain/events.py", "import azure.functions", "The domain is plain Python"),
        ("ingest/validation.py", "import shared.adapters", "Stages reach external systems through ports"),
        ("process/decoding.py", "import ingest.validation", "The stages are independent"),
        ("privacy/erasure.py", "import process.service", "The stages are independent"),
        ("privacy/erasure.py", "import azure.functions", "Use cases are free of HTTP and Azure"),
        ("privacy/requests.py", "import shared.adapters", "Stages reach external systems through ports"),
        ("ingest/service.py", "import azure.functions", "Use cases are free of HTTP and Azure"),
        ("shared/adapters/__init__.py", "import process.service", "Adapters import no stage"),
        ("shared/adapters/__init__.py", "import shared.bootstrap", "Adapters import no stage"),
        ("shared/bootstrap.py", "import ingest.service", "The container chooses adapters and knows no stage"),
        ("shared/ports.py", "import shared.settings", "Ports are defined on the domain alone"),
        ("shared/settings.py", "import cloudscale_local.host", "What deploys never imports the local half"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tree_copy: Path, module: str, forbidden_import: str, contract: str
) -> None:
    path = tree_copy / module
    path.write_text(path.read_text() + f"\n{forbidden_import}  # noqa\n")

    result = lint_imports(tree_copy)

    assert result.returncode == 1
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken


def test_function_app_imports_only_the_functions_library_and_each_stages_blueprint() -> None:
    # import-linter takes packages only, and function_app is a module: its rule is checked here.
    tree = ast.parse((REPOSITORY / "function_app.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module)

    # The ingest stage has two: its own API, and the Segment-compatible one.
    assert imported == {
        "azure.functions",
        "ingest.blueprint",
        "ingest.segment_blueprint",
        "process.blueprint",
        "changefeed.blueprint",
        "privacy.blueprint",
    }
