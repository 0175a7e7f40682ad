"""The embedded local host: runs the Functions app on one machine without Core Tools."""

from cloudscale_local.host.server import HostOptions, serve

__all__ = ["HostOptions", "serve"]
