"""`cloudscale --version` prints the installed package's version."""

from __future__ import annotations

import importlib.metadata

from click.testing import CliRunner

from cloudscale_local.cli.main import main


def test_version_is_the_installed_packages() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"cloudscale {importlib.metadata.version('cloudscale')}\n"
