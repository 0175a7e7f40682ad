"""`cloudscale --local-settings [PATH]` applies a local.settings.json's values as `func start` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cloudscale_local.cli.local_settings import LocalSettingsError, apply_local_settings, read_local_settings
from tests.analytics_store import analytics_folder

REPO = Path(__file__).resolve().parents[2]


def write(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def plain(values: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"IsEncrypted": False, "Values": values, **more}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data folder holding an analytics store, which `cloudscale query` finds only through the setting."""
    return analytics_folder(tmp_path)


def cloudscale(cwd: Path, *args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("CLOUDSCALE_")}
    return subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", *args],
        cwd=cwd,
        env={**inherited, "PYTHONPATH": str(REPO), **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_values_are_settings_of_the_command(tmp_path: Path, data_dir: Path) -> None:
    settings = write(tmp_path / "mine.json", plain({"CLOUDSCALE_DATA_DIR": str(data_dir)}))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    without = cloudscale(elsewhere, "query", "SELECT count(*) AS n FROM events", "--json")
    assert without.returncode == 1, "no store where the default data folder is"
    result = cloudscale(
        elsewhere, "--local-settings", str(settings), "query", "SELECT count(*) AS n FROM events", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"n": 0}]


def test_without_a_path_the_file_in_the_apps_folder_is_read(tmp_path: Path, data_dir: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "function_app.py").write_text("")
    write(app / "local.settings.json", plain({"CLOUDSCALE_DATA_DIR": str(data_dir)}))
    result = cloudscale(app, "--local-settings", "query", "SELECT 1 AS one", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "one\n1\n"


def test_a_variable_already_set_wins_with_funcs_warning(tmp_path: Path, data_dir: Path) -> None:
    settings = write(tmp_path / "mine.json", plain({"CLOUDSCALE_DATA_DIR": str(tmp_path / "nowhere")}))
    result = cloudscale(
        tmp_path, "--local-settings", str(settings), "query", "SELECT 1", CLOUDSCALE_DATA_DIR=str(data_dir)
    )
    assert result.returncode == 0, result.stderr
    assert (
        "Skipping 'CLOUDSCALE_DATA_DIR' from local settings as it's already defined in current environment variables."
        in result.stderr
    )


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    result = cloudscale(tmp_path, "--local-settings", str(tmp_path / "absent.json"), "query", "SELECT 1")
    assert result.returncode == 1
    assert f"no absent.json at {tmp_path / 'absent.json'}" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_variable_is_overwritten_and_null_is_skipped() -> None:
    environ = {"EMPTY": "", "SET": "mine"}
    outcome = apply_local_settings({"EMPTY": "from file", "SET": "from file", "NEW": "", "NULL": None}, environ)
    assert environ == {"EMPTY": "from file", "SET": "mine", "NEW": ""}
    assert outcome.kept_from_environment == ("SET",)
    assert outcome.null == ("NULL",)


def test_connection_strings_become_connection_strings_colon_name(tmp_path: Path) -> None:
    path = write(
        tmp_path / "local.settings.json",
        plain(
            {"A": "1"}, ConnectionStrings={"Sql": "Server=x", "Other": {"ConnectionString": "y", "ProviderName": "p"}}
        ),
    )
    assert read_local_settings(path) == {"A": "1", "ConnectionStrings:Sql": "Server=x", "ConnectionStrings:Other": "y"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"Values": {"A": "x"}}, "encrypted"),
        ({"IsEncrypted": True, "Values": {"A": "x"}}, "func settings decrypt"),
        ("{not json", "not valid JSON"),
        ([], "not a JSON object"),
        (plain({"A": 5}), "Values.A must be a string or null, not 5"),
        ({"IsEncrypted": False, "Values": ["A"]}, "Values must be a JSON object"),
    ],
)
def test_what_func_would_not_read_is_refused(tmp_path: Path, document: Any, message: str) -> None:
    path = write(tmp_path / "local.settings.json", document)
    with pytest.raises(LocalSettingsError, match=message):
        read_local_settings(path)
