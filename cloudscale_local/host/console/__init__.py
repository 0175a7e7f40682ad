"""The local host's console under `/dashboard`: charts, live events, stored documents, dead letters.

The local host's own page (`func start` serves none; on Azure the portal's Live Metrics and the
workbook answer the same questions): served to this machine's loopback clients only.
"""

from cloudscale_local.host.console.app import build_console
from cloudscale_local.host.console.guard import CONSOLE_HEADER
from cloudscale_local.host.console.sources import ConsoleSources
from cloudscale_local.host.console.stream import ConsoleStreams

__all__ = ["CONSOLE_HEADER", "ConsoleSources", "ConsoleStreams", "build_console"]
