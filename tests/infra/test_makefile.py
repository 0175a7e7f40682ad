"""The Makefile's checks before it installs anything, and `make run PORT=... ARGS=...`.

Run with real make and bash against a copy of the Makefile and its scripts in a temporary
folder; nothing is installed (a check that fails stops make first, the rest use `make -n`).
The Pythons older than 3.11 are stand-ins (a script that answers as one would): this machine
need not have one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COPIED = ["Makefile", ".ci", "pyproject.toml", *(path.name for path in ROOT.glob("requirements*.txt"))]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("make is not installed")
        pytest.skip("make is not installed")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        else:
            shutil.copy2(source, tmp_path / name)
    return tmp_path


def make(checkout: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHON", "PORT", "MAKEFLAGS")}
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=checkout,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stand_in_python(folder: Path, version: str) -> Path:
    """An executable that answers the version question as Python `version` would."""
    path = folder / f"python{version}"
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def test_make_run_passes_the_port_and_arguments(checkout: Path) -> None:
    result = make(checkout, "-n", "run", "PORT=8080", "ARGS=--instances 1", env={"PORT": "3000"})
    assert result.returncode == 0, result.stderr
    command = result.stdout.splitlines()[-1].split()
    assert command == [".venv/bin/cloudscale", "run", "--port", "8080", "--instances", "1"]


def test_make_run_defaults_to_7071_whatever_port_the_environment_holds(checkout: Path) -> None:
    result = make(checkout, "-n", "run", env={"PORT": "3000"})
    assert result.stdout.splitlines()[-1].split() == [".venv/bin/cloudscale", "run", "--port", "7071"]


def test_the_install_says_what_it_installs(checkout: Path) -> None:
    result = make(checkout, "-n", "run")
    assert "Installing the local host's $(grep -c" in result.stdout
    assert "a minute or two the first time" in result.stdout


def test_a_python_too_old_stops_make_before_anything_is_installed(checkout: Path) -> None:
    old = stand_in_python(checkout, "3.9")
    result = make(checkout, "run", f"PYTHON={old}")
    assert result.returncode != 0
    assert f"CloudScale needs Python 3.11 or newer; PYTHON={old} is Python 3.9" in result.stderr
    assert "make run PYTHON=python3.12" in result.stderr
    assert not (checkout / ".venv").exists(), "nothing made"
    assert "pip" not in result.stdout


def test_a_python_that_is_not_there_is_named(checkout: Path) -> None:
    result = make(checkout, "test", "PYTHON=python3.99-not-installed")
    assert result.returncode != 0
    assert "PYTHON=python3.99-not-installed was not found" in result.stderr
    assert not (checkout / ".venv").exists()


def test_a_venv_whose_python_no_longer_runs_is_removed_and_rebuilt(checkout: Path) -> None:
    venv_bin = checkout / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(checkout / "python3.10-uninstalled")
    dry = make(checkout, "-n", "run")
    assert "make would remove it and build it again" in dry.stderr
    assert "python3 -m venv .venv" in dry.stdout
    assert venv_bin.is_dir(), "make -n removes nothing"

    checked = subprocess.run(
        [str(checkout / ".ci" / "check-python"), sys.executable, ".venv", "file", ""],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0
    assert ".venv is stale (its python no longer runs" in checked.stderr
    assert not (checkout / ".venv").exists()


def test_a_venv_of_another_minor_version_than_the_chosen_python_is_named(checkout: Path) -> None:
    venv_bin = checkout / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    other = stand_in_python(checkout, "3.99")
    result = make(checkout, "-n", "run", f"PYTHON={other}")
    assert result.returncode != 0
    assert f".venv was made with Python {mine}, and PYTHON={other} is Python 3.99" in result.stderr
    assert "rm -rf .venv" in result.stderr
    assert venv_bin.is_dir(), "a venv that works is left for the user to remove"
    assert make(checkout, "-n", "run").returncode == 0, "without a chosen PYTHON, the venv is used as it is"


def test_help_and_clean_need_no_python_check(checkout: Path) -> None:
    result = make(checkout, "help", "PYTHON=python3.99-not-installed")
    assert result.returncode == 0
    assert "PORT=8080" in result.stdout


def check_python(checkout: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(checkout / ".ci" / "check-python"), sys.executable, ".venv", "file", ""],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_venv_whose_python_is_there_but_does_not_run_here_is_named_not_removed(checkout: Path) -> None:
    # A .venv made on another machine (the folder mounted into a container) works there: not ours to delete.
    venv_bin = checkout / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_bytes(b"\xcf\xfa\xed\xfe not an executable of this machine")
    (venv_bin / "python").chmod(0o755)
    checked = check_python(checkout)
    assert checked.returncode != 0
    assert "rm -rf .venv" in checked.stderr
    assert (venv_bin / "python").is_file(), "left for the user to remove"


def test_a_venv_still_being_made_is_left_alone(checkout: Path) -> None:
    # Another make creating it this moment: the folder is there, its python not yet.
    (checkout / ".venv").mkdir()
    (checkout / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    checked = check_python(checkout)
    assert checked.returncode == 0, checked.stderr
    assert (checkout / ".venv" / "pyvenv.cfg").is_file()
