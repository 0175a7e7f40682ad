"""The embedded local host: runs the Functions app on one machine without Core Tools."""

from local_host.server import HostOptions, serve

__all__ = ["HostOptions", "serve"]
