"""`cloudscale --local-settings [PATH]`: a `local.settings.json`'s values as settings, as `func start` applies them.

Core Tools reads the file (`AppSettingsFile`) and, before the host starts, sets each of its
`Values` as a process environment variable, unless a variable of that name already holds a
non-empty value: that one wins, with a warning naming it (`StartHostAction.UpdateEnvironmentVariables`).
An empty value is set as empty; a null one is skipped with a warning. Each `ConnectionStrings`
entry (a string, or an object with `ConnectionString`) becomes `ConnectionStrings:<name>`.
`IsEncrypted` is true unless the file says false, and encrypted values are Windows DPAPI blobs
that only `func settings decrypt` can read: such a file is refused here, with that advice.
Stricter than Core Tools: a file that is not a JSON object is an error (func warns and carries
on without any of the file's values), and so is a value that is not a string or null. The file's
`Host` section (`LocalHttpPort`, `CORS`) is not read: `cloudscale run --port` and `--cors` are.
Sources: docs/architecture.md, "local.settings.json".
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "LOCAL_SETTINGS_FILE",
    "LocalSettingsError",
    "AppliedSettings",
    "apply_local_settings",
    "read_local_settings",
]

LOCAL_SETTINGS_FILE = "local.settings.json"


class LocalSettingsError(Exception):
    """The file cannot be read, is not what func reads, or is encrypted."""


@dataclass(frozen=True, slots=True)
class AppliedSettings:
    """What `apply_local_settings` did, for the warnings func prints."""

    applied: tuple[str, ...]
    kept_from_environment: tuple[str, ...]
    """Names whose environment variable already held a value, which won."""
    null: tuple[str, ...]
    """Names whose value was null: skipped."""


def read_local_settings(path: Path) -> dict[str, str | None]:
    """The settings `path` holds, `Values` then `ConnectionStrings:<name>`; None for a null value."""
    try:
        document = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise LocalSettingsError(
            f"no {path.name} at {path}: copy local.settings.sample.json there, or give its path (--local-settings PATH)"
        ) from None
    except OSError as exc:
        raise LocalSettingsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise LocalSettingsError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise LocalSettingsError(f"{path} is not a JSON object with a Values object, as func reads it")
    if document.get("IsEncrypted", True) is not False:
        raise LocalSettingsError(
            f'{path}: its values are encrypted ("IsEncrypted" is true, or missing, which func reads as true); '
            "only Core Tools can decrypt them (`func settings decrypt`); or write them in plain text "
            'with "IsEncrypted": false'
        )
    settings: dict[str, str | None] = {}
    for name, value in _section(document, "Values", path).items():
        settings[name] = _text(value, f"Values.{name}", path)
    for name, value in _section(document, "ConnectionStrings", path).items():
        inner = value.get("ConnectionString") if isinstance(value, dict) else value
        settings[f"ConnectionStrings:{name}"] = _text(inner, f"ConnectionStrings.{name}", path)
    return settings


def apply_local_settings(settings: Mapping[str, str | None], environ: MutableMapping[str, str]) -> AppliedSettings:
    """Set each setting in `environ` as func does: a non-empty variable already there wins; null is skipped."""
    applied: list[str] = []
    kept: list[str] = []
    null: list[str] = []
    for name, value in settings.items():
        if not name:
            continue  # func skips an empty name too, with a warning; there is nothing to name
        if environ.get(name):
            kept.append(name)
        elif value is None:
            null.append(name)
        else:
            environ[name] = value
            applied.append(name)
    return AppliedSettings(tuple(applied), tuple(kept), tuple(null))


def _section(document: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    section = document.get(key)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise LocalSettingsError(f"{path}: {key} must be a JSON object of names and values")
    return section


def _text(value: Any, where: str, path: Path) -> str | None:
    """A value as a string; None for null. Anything else is refused (func converts numbers and booleans
    with .NET's formatting, which is not worth imitating: write them as strings, as the sample does)."""
    if value is None or isinstance(value, str):
        return value
    shown = orjson.dumps(value).decode()
    raise LocalSettingsError(
        f"{path}: {where} must be a string or null, not {shown[:40]} (quote it, as local.settings.sample.json does)"
    )
