"""The dashboard's assets ship with the package: every file its page loads is package data."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from cloudscale_local.host.console.app import STATIC_DIR

REPO = Path(__file__).resolve().parents[2]


def test_every_static_file_is_package_data() -> None:
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = settings["tool"]["setuptools"]["package-data"]["cloudscale_local.host.console"]
    for path in STATIC_DIR.iterdir():
        relative = path.relative_to(STATIC_DIR.parent).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative


def test_the_page_loads_only_its_own_assets() -> None:
    page = (STATIC_DIR / "index.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources
    for source in sources:
        assert source.startswith("/dashboard/static/"), source  # no CDN, nothing from elsewhere
        assert (STATIC_DIR / source.removeprefix("/dashboard/static/")).is_file(), source
