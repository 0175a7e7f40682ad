"""What the operator commands share: settings read as `cloudscale run` reads them, and a
container built from them for one piece of async work, with backend failures as one-line errors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from shared.adapters.sqlite.worker import StoreFileError
from shared.bootstrap import Container
from shared.ports import PortError
from shared.settings import Settings, SettingsError, load_settings

__all__ = ["load_cli_settings", "run_with_container"]

T = TypeVar("T")


def load_cli_settings() -> Settings:
    """The settings from the environment; a bad one is a one-line error (exit status 1)."""
    try:
        return load_settings(os.environ)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def run_with_container(
    settings: Settings,
    action: Callable[[Container], Awaitable[T]],
    *,
    make_container: Callable[[Settings], Container] = Container,
) -> T:
    """Build a container (it chooses the backends from `settings`), run `action` on it, close it.

    A backend failure (`PortError`, which includes a registry conflict, a `SettingsError`, a
    store file that cannot be opened) becomes a `click.ClickException`: its message on one
    line, exit status 1, no traceback.
    """

    async def main() -> T:
        container = make_container(settings)
        try:
            return await action(container)
        finally:
            await container.close()

    try:
        return asyncio.run(main())
    except (PortError, SettingsError, StoreFileError) as exc:
        raise click.ClickException(str(exc)) from None
