"""Whether the host can listen where it was asked to, and what to do when it cannot."""

from __future__ import annotations

import contextlib
import errno
import socket
from collections.abc import Iterator

__all__ = ["ListenError", "check_port_free", "listen_error"]

SPARE_PORT = 7072
"""The port a message suggests when 7071, the default (`func start`'s), is taken."""


class ListenError(Exception):
    """The listening socket could not be bound (most often: the port is in use)."""


def check_port_free(host: str, port: int) -> None:
    """Raise `ListenError`, saying what to do, unless `host:port` can be bound by this process alone.

    Bound without `SO_REUSEPORT`, which only succeeds if no socket holds the port (even one
    that allows sharing it, such as a second `cloudscale run`'s); closed at once, before the host
    binds for real.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with listen_error(host, port), socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


@contextlib.contextmanager
def listen_error(host: str, port: int) -> Iterator[None]:
    """Turn an `OSError` of binding `host:port` into a `ListenError` that says what to do."""
    try:
        yield
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{_advice(exc, port)}") from None


def _advice(error: OSError, port: int) -> str:
    if error.errno == errno.EADDRINUSE:
        other = SPARE_PORT if port != SPARE_PORT else SPARE_PORT + 1
        return (
            f"; another process holds port {port} (a `cloudscale run` or `func start` already going?). "
            f"Choose another: `cloudscale run --port {other}` (`make run PORT={other}`), or --port 0 for any free one"
        )
    if error.errno == errno.EACCES and 0 < port < 1024:
        return "; a port below 1024 needs privileges: choose one above, e.g. `--port 7071` (`make run PORT=7071`)"
    return ""
