"""What `func azure functionapp publish` puts in the zip, read from `.funcignore` as Core Tools reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.package import FuncIgnore, package_files, stage_package

REPOSITORY = Path(__file__).resolve().parents[2]


def test_the_app_and_its_settings_are_deployed() -> None:
    files = set(package_files(REPOSITORY))

    for needed in ("function_app.py", "host.json", "requirements.txt", "shared/domain/fraud_rules.json"):
        assert needed in files
    for stage in ("ingest/", "process/", "changefeed/", "privacy/"):
        assert any(name.startswith(stage) for name in files), stage


@pytest.mark.parametrize(
    "prefix",
    ["cloudscale_local/", "tests/", "docs/", "infra/", ".github/", ".venv/", ".venv-deploy/", ".emulators/"],
)
def test_tooling_is_not_deployed(prefix: str) -> None:
    assert not [name for name in package_files(REPOSITORY) if name.startswith(prefix)]


def test_no_test_module_is_deployed() -> None:
    files = package_files(REPOSITORY)
    adapters_tests = [name for name in files if name.startswith("shared/adapters/") and "/test_" in name]

    assert not [name for name in files if Path(name).name.startswith("test_") and name.endswith(".py")]
    assert not adapters_tests
    assert any(name.startswith("shared/adapters/event_queue/") for name in files)


def test_local_settings_and_ignore_files_are_never_deployed(tmp_path: Path) -> None:
    for name in ("function_app.py", "local.settings.json", ".funcignore", "sub/.gitignore", ".git/HEAD"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")

    assert package_files(tmp_path) == ["function_app.py"]


def test_a_line_matches_the_start_of_the_path_only() -> None:
    rules = FuncIgnore.parse("tests/\nMakefile\n/docs\n")

    assert not rules.accepts("tests/test_x.py")
    assert rules.accepts("shared/tests/test_x.py")
    assert not rules.accepts("Makefile.local")
    assert not rules.accepts("docs/architecture.md")


def test_a_star_stays_within_one_segment_and_a_bang_lets_paths_back_in() -> None:
    rules = FuncIgnore.parse("*.egg-info/\n.venv-*/\nbuild/\n!build/keep.txt\n")

    assert not rules.accepts("cloudscale.egg-info/PKG-INFO")
    assert not rules.accepts(".venv-deploy/bin/python")
    assert rules.accepts("shared/x.egg-info/y")
    assert not rules.accepts("build/lib/x.py")
    assert rules.accepts("build/keep.txt")


def test_staging_copies_exactly_the_package(tmp_path: Path) -> None:
    app = tmp_path / "app"
    for name in ("function_app.py", "shared/a.py", "tests/t.py"):
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(name)
    (app / ".funcignore").write_text("tests/\n")

    staged = stage_package(app, tmp_path / "wwwroot")

    copied = sorted(path.relative_to(staged).as_posix() for path in staged.rglob("*") if path.is_file())
    assert copied == ["function_app.py", "shared/a.py"]
    assert (staged / "shared/a.py").read_text() == "shared/a.py"


def test_compiled_bytecode_is_never_deployed_at_any_depth(tmp_path: Path) -> None:
    # GIVEN the app's ignore rules and bytecode a local run left in a stage's package
    (tmp_path / ".funcignore").write_text((REPOSITORY / ".funcignore").read_text())
    for name in ("function_app.py", "ingest/blueprint.py", "ingest/__pycache__/blueprint.cpython-313.pyc"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")

    # THEN only the sources are packaged (the remote build compiles its own)
    assert package_files(tmp_path) == ["function_app.py", "ingest/blueprint.py"]
