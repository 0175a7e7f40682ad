"""The `cloudscale` script finds the function app the way `func start` does: in its folder."""

from __future__ import annotations

from pathlib import Path

from cloudscale_local.cli.entry import find_script_root

CHECKOUT = Path(__file__).resolve().parents[2]


def test_the_current_folder_is_the_script_root_when_it_holds_the_app(tmp_path: Path) -> None:
    (tmp_path / "function_app.py").write_text("")

    assert find_script_root(tmp_path) == tmp_path


def test_elsewhere_the_checkout_the_tools_were_installed_from_is_used(tmp_path: Path) -> None:
    assert find_script_root(tmp_path) == CHECKOUT
