"""The `cloudscale` console script: finds the function app, then runs the command line.

Only the local half is installed as a package; the function app (`function_app.py`, its stage
packages and `shared/`) is imported from its folder, the script root, as the Functions host
imports it (`func start` runs in the app's folder, and the Python worker puts that folder on
`sys.path`). The script root is the current folder when it holds `function_app.py`, else the
checkout this package was installed from in editable mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["find_script_root", "main"]

APP_MODULE_FILE = "function_app.py"


def find_script_root(cwd: Path) -> Path | None:
    """The folder holding `function_app.py`: `cwd`, or the checkout beside this package; None if neither."""
    for candidate in (cwd, Path(__file__).resolve().parents[2]):
        if (candidate / APP_MODULE_FILE).is_file():
            return candidate
    return None


def main() -> None:
    """Put the script root first on `sys.path`, then hand over to the click group."""
    script_root = find_script_root(Path.cwd())
    if script_root is None:
        sys.exit(f"cloudscale: no {APP_MODULE_FILE} here; run it in the function app's folder, as with func start")
    sys.path.insert(0, str(script_root))
    # Imported only now: the command modules import the app's packages.
    from cloudscale_local.cli.main import main as cloudscale

    cloudscale()
