"""How a host process logs: what `cloudscale run --log-level` and `--quiet` mean, in every instance.

As with `func start`, a new user sees a line per invocation (`Function.<name>` categories, at
Information), what the app logs, and the host's warnings and errors, but not the chatter of
the host's internals and the libraries under it (lease hand-overs between instances, uvicorn's
startup lines, the Azure SDKs' HTTP logging): Core Tools shows user categories (the functions'
and any it does not know) from Information and system ones (the host's) from Warning unless
`--verbose` (docs/architecture.md, "The Functions host's rules"). Here:

- `--log-level info` (the default): the app's loggers (`ingest`, `process`, `cloudscale.security`,
  ...) from INFO, with the invocation lines; the "system" loggers (`SYSTEM_LOGGERS`: the local
  host's own, uvicorn, the SDKs) from WARNING;
- `--log-level debug`: everything from DEBUG, system loggers included (`func start --verbose`);
- `--log-level warning` / `error`: everything from that level (a failed invocation's line is an
  ERROR, as on the host, so it stays);
- `--quiet`: no invocation lines at all (not even recorded), and WARNING unless a level is given.

Every record goes through one `GatedHandler` (`cloudscale_local.host.log_gate`) on stderr, so
invocation lines are rate-limited and repeated warnings collapsed, uvicorn's included (the host
gives uvicorn no logging configuration of its own, so its records reach the root logger).
"""

from __future__ import annotations

import logging
import sys
from typing import IO

from cloudscale_local.host.log_gate import GatedHandler
from cloudscale_local.terminal_text import escape_controls

__all__ = ["LOG_LEVELS", "SYSTEM_LOGGERS", "configure_logging", "default_log_level", "system_level"]

LOG_LEVELS = ("debug", "info", "warning", "error")

SYSTEM_LOGGERS = (
    "cloudscale_local",
    "uvicorn",
    "azure",
    "opentelemetry",
    "asyncio",
    "urllib3",
    "httpx",
    "httpcore",
    "multipart",
)
"""The local host's loggers and those of the libraries under it: from WARNING unless the level is `debug`."""

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FUNCTION_FORMAT = "%(asctime)s %(message)s"
"""Invocation lines say which function they are about themselves ("Executed 'Functions.<name>' …")."""


class _HostFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._function = logging.Formatter(FUNCTION_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = self._function.format(record) if record.name.startswith("Function.") else super().format(record)
        # A message may carry what a request sent (a path, a field): terminal escapes in it are
        # shown as text. Line breaks stay (tracebacks); tabs too.
        return escape_controls(text, keep="\n\t")


def default_log_level(quiet: bool) -> str:
    """The level when none is given: `info` (the invocation lines), or `warning` with `--quiet`."""
    return "warning" if quiet else "info"


def system_level(level: str) -> str:
    """The level of the system loggers (`SYSTEM_LOGGERS`, uvicorn's included) for the run's `level`."""
    if level == "debug":
        return "debug"
    return level if level in ("warning", "error") else "warning"


def configure_logging(level: str, *, stream: IO[str] | None = None) -> GatedHandler:
    """Make this process log at `level` through one gated handler on `stream` (stderr); returns the handler.

    Replaces the root logger's handlers, so it can be called again (a test, a re-run) without
    writing every line twice.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    handler = GatedHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_HostFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in SYSTEM_LOGGERS:
        logging.getLogger(name).setLevel(system_level(level).upper())
    return handler
