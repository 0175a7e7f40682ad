"""The Data Explorer schema script (`changefeed/kusto/events.kql`): where it is, and its commands.

The script is the one definition of the `Events` table, its JSON ingestion mapping, its
policies and the `EventsDedup` view; `cloudscale kusto-setup` applies it and the ingestion
client names the table and mapping defined here (`EVENTS_TABLE`, `EVENTS_MAPPING`).

The file is found through the `changefeed` package's location, not `importlib.resources`:
`resources.files("changefeed")` would import the stage, and an adapter imports no stage (an
import contract in `pyproject.toml`). `importlib.util.find_spec` locates a top-level package
without importing it, from the app's folder (the script root) as the Functions host and
`cloudscale` put it on `sys.path`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Final

__all__ = [
    "EVENTS_MAPPING",
    "EVENTS_TABLE",
    "EVENTS_VIEW",
    "SCHEMA_RESOURCE",
    "events_commands",
    "events_script",
    "events_script_path",
    "split_commands",
]

EVENTS_TABLE: Final = "Events"
"""The raw analytics table rows are ingested into."""
EVENTS_MAPPING: Final = "EventsJsonMapping"
"""The table's JSON ingestion mapping, referenced by name at ingestion."""
EVENTS_VIEW: Final = "EventsDedup"
"""The materialized view with one row per (`TenantId`, `EventId`): what analysts query."""

SCHEMA_RESOURCE: Final = ("changefeed", "kusto/events.kql")
"""The script's package and its path inside it."""


def events_script_path() -> Path:
    """Where the schema script is, without importing the `changefeed` package."""
    package, relative = SCHEMA_RESOURCE
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} not found: cannot locate {relative}")
    for folder in spec.submodule_search_locations:
        candidate = Path(folder, relative)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{relative} is missing from package {package!r} (the schema ships beside its code)")


def events_script() -> str:
    """The schema script's text."""
    return events_script_path().read_text(encoding="utf-8")


def events_commands() -> tuple[str, ...]:
    """The schema script's control commands, in the order they must run."""
    return split_commands(events_script())


def split_commands(script: str) -> tuple[str, ...]:
    """Split a Kusto script into its control commands.

    Commands are separated by at least one blank line, as the Kusto web UI and Kusto Explorer
    read them; whole-line `//` comments are dropped. A command therefore never contains a
    blank line. Raises `ValueError` for a block that is not a control command (does not start
    with `.`), so a stray query or a typo fails before anything is sent.
    """
    commands: list[str] = []
    block: list[str] = []
    for line in [*script.splitlines(), ""]:
        if not line.strip():
            if block:
                commands.append(_command(block))
                block = []
        elif not line.lstrip().startswith("//"):
            block.append(line.rstrip())
    return tuple(commands)


def _command(lines: list[str]) -> str:
    text = "\n".join(lines)
    if not text.startswith("."):
        first_line = text.splitlines()[0]
        raise ValueError(f"not a control command (they start with '.'): {first_line!r}")
    return text
