"""Headless Chromium for the dashboard's tests: Debian's `chromium`, driven by Playwright.

`make browser` installs it (`make test` depends on it). Without it the browser tests are
skipped with a reason, except under `CI=true`, where they fail: a skipped suite there would
look like a passing one. Playwright's own browser download is never used (`executable_path`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, sync_playwright

__all__ = ["CHROMIUM", "chromium"]

CHROMIUM = Path(os.environ.get("CLOUDSCALE_CHROMIUM", "/usr/bin/chromium"))
"""The browser the tests drive (`CLOUDSCALE_CHROMIUM` to use another)."""

_ARGS = [
    "--headless",
    "--no-sandbox",  # the tests run as root on CI, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # nothing but the local host is ever reached
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def chromium() -> Iterator[BrowserContext]:
    """A fresh Chromium profile; skips (fails under `CI=true`) when Chromium is not installed."""
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"!!! CHROMIUM NOT AVAILABLE at {CHROMIUM}, browser tests NOT RUN (make browser installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="cloudscale-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=_ARGS
        )
        try:
            yield context
        finally:
            context.close()
