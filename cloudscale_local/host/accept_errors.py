"""Quiet accept errors at the file-descriptor limit: one log line per interval, with a count.

When the process runs out of file descriptors, asyncio logs every failed `accept()` with a
traceback, and its accept loop retries up to the listen backlog each time: a burst of
connections at the limit wrote megabytes of identical tracebacks a second. The handler
installed here counts those errors (`cloudscale_http_accept_errors_total`) and logs one
WARNING per interval saying how many there were; the retries asyncio scheduled that fire
after the server closed are dropped; every other loop error goes to the handler that was
there before.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics

__all__ = ["AcceptErrorLog", "install"]

logger = logging.getLogger(__name__)

_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_accept_errors = metrics.get_meter("local_host").create_counter(
    "cloudscale_http_accept_errors",
    unit="{error}",
    description="Connections the local host could not accept for want of a file descriptor or memory.",
)

ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]


@dataclass
class AcceptErrorLog:
    """A loop exception handler that summarises resource errors on accept, once per `interval`."""

    fallback: ExceptionHandler
    interval: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _unreported: int = 0
    _last_report: float | None = field(default=None)

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if _is_stale_accept_retry(context):
            # Each failed accept schedules a retry a second later; the ones still pending when
            # the server closes fail on the closed socket. Nothing is lost: the host is stopping.
            logger.debug("a pending accept retry found the server closed")
            return
        if not (isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS):
            self.fallback(loop, context)
            return
        _accept_errors.add(1)
        self._unreported += 1
        now = self.clock()
        if self._last_report is None or now - self._last_report >= self.interval:
            logger.warning(
                "accept() failed %d time(s) since the last report: %s (raise the file-descriptor"
                " limit or lower the load); the next report comes %.0f s later at the earliest",
                self._unreported,
                exc.strerror,
                self.interval,
            )
            self._unreported = 0
            self._last_report = now


def _is_stale_accept_retry(context: dict[str, Any]) -> bool:
    # asyncio's selector loop retries with its private `_start_serving`; the handle's repr
    # names it (a public way to tell does not exist).
    exc = context.get("exception")
    return isinstance(exc, (ValueError, OSError)) and "._start_serving(" in repr(context.get("handle"))


def install(loop: asyncio.AbstractEventLoop, interval: float = 10.0) -> AcceptErrorLog:
    """Route `loop`'s resource errors on accept through a summarising handler."""
    previous = loop.get_exception_handler()

    def fallback(failed_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if previous is not None:
            previous(failed_loop, context)
        else:
            failed_loop.default_exception_handler(context)

    handler = AcceptErrorLog(fallback, interval)
    loop.set_exception_handler(handler)
    return handler
