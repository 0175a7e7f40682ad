"""uvicorn's server as the local host runs it: a clean exit on a stop signal, an announcement once bound."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn

from cloudscale_local.host import accept_errors
from cloudscale_local.host.console import ConsoleStreams

__all__ = ["HostServer"]


class HostServer(uvicorn.Server):
    """uvicorn's server, calling `on_started` with the bound address once it listens (port 0 included).

    `stop_on_ctrl_c`: stop on SIGINT as well as SIGTERM (a lone host); an instance under the
    supervisor stops on SIGTERM only. `console`: the dashboard's streams, ended first when the
    server shuts down.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        on_started: Callable[[tuple[str, int]], None],
        console: ConsoleStreams,
        *,
        stop_on_ctrl_c: bool,
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._console = console
        self._stop_on_ctrl_c = stop_on_ctrl_c

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # An open dashboard's stream never ends by itself: ended first, it does not hold the
        # graceful shutdown (which waits for every response) for its whole timeout.
        self._console.close()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Stop gracefully on SIGINT and SIGTERM, then exit with status 0.

        uvicorn's own handling re-raises the signal once it has shut down, so the process
        would end "killed by SIGTERM" (or with a KeyboardInterrupt) after a clean stop.
        """
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if self._stop_on_ctrl_c else (signal.SIGTERM,)
        for sig in signals:
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        accept_errors.install(asyncio.get_running_loop())
        await super().startup(sockets)
        if self.started:
            self._on_started(self.servers[0].sockets[0].getsockname()[:2])
