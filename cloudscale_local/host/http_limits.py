"""The local host's HTTP-layer limits: how big a request head may be and how long it may take.

uvicorn's httptools parser accepts a request head of any size (a 100 MB header is buffered
whole) and waits forever for a head that never ends. `bounded_protocol` returns a subclass
of uvicorn's httptools protocol that answers 431 once a head passes `max_head_bytes` (counted
as the bytes arrive, so an endless header is never buffered past the limit) and 408 when a
head is not complete within `read_timeout_seconds` of the connection or of its first byte
(a connection that sends nothing at all is closed without an answer).
Kestrel, the Functions host's server, does the same with its own defaults (see
docs/architecture.md). Bodies are bounded by the gateway, which sees them per request.
Refusals are counted (`cloudscale_http_refused_total{reason}`), never logged one by one:
a hostile client must not be able to fill the log.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import httptools
import uvicorn
from opentelemetry import metrics
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.domain.events import MAX_BODY_BYTES

__all__ = ["HttpLimits", "bounded_protocol", "count_refusal", "server_config"]

logger = logging.getLogger(__name__)

_meter = metrics.get_meter("local_host")
_refused = _meter.create_counter(
    "cloudscale_http_refused",
    unit="{request}",
    description="Requests the local host refused or dropped at the HTTP layer, by reason.",
)


def count_refusal(reason: str) -> None:
    """Count one request refused (or abandoned by its client) at the HTTP layer."""
    _refused.add(1, {"reason": reason})
    logger.debug("HTTP request refused: %s", reason)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What one request may cost the local host before the function sees it."""

    max_head_bytes: int = 32 * 1024
    """Request line plus headers; Kestrel's MaxRequestHeadersTotalSize default."""
    max_body_bytes: int = MAX_BODY_BYTES
    """The app's own limit (1 MiB); Azure's front end allows 100 MB and the app refuses the rest."""
    read_timeout_seconds: float = 30.0
    """For the head (from the connection or its first byte) and, separately, for the body."""
    min_body_bytes_per_second: float = 240.0
    """Below this average rate, after the grace period, a body is cut off (Kestrel's MinRequestBodyDataRate)."""
    body_rate_grace_seconds: float = 5.0
    keep_alive_seconds: int = 5
    """An idle keep-alive connection is closed after this long (uvicorn's own default)."""


class _HeadTooLargeError(Exception):
    """Raised from a parser callback to stop parsing a head over the limit."""


def bounded_protocol(limits: HttpLimits) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with `limits` on the request head."""

    class BoundedHttpToolsProtocol(_BoundedHttpTools):
        head_limits = limits

    return BoundedHttpToolsProtocol


class _BoundedHttpTools(HttpToolsProtocol):
    head_limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._parsed_head = 0
        self._reading_head = True
        self._refused = False
        self._received_any = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A client that connects and sends nothing is on the head's clock too.
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own version, except that a head over the limit is refused with 431 and a
        # malformed request is counted instead of logged.
        self._unset_keepalive_if_required()
        self._received_any = True
        if self._reading_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self._refused:
                count_refusal("malformed")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._reading_head and self._head_bytes > self.head_limits.max_head_bytes:
            # The head has not ended within the limit: refuse before buffering any more of it.
            self._refuse(431, "request_header_too_large", "request headers over the limit")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._head_bytes = 0
        self._parsed_head = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._check_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # name, ": ", value, CRLF: what the header took on the wire (obs-fold aside).
        self._check_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def _check_head(self, size: int) -> None:
        # The bytes of a whole head can arrive in one read, past the count in data_received;
        # the parsed sizes catch it before the request reaches the app.
        self._parsed_head += size
        if self._parsed_head > self.head_limits.max_head_bytes:
            self._refuse(431, "request_header_too_large", "request headers over the limit")
            raise _HeadTooLargeError

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_limits.read_timeout_seconds, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._reading_head or self.transport.is_closing():
            return
        if not self._received_any:
            # Connected and sent nothing at all: there is no request to answer.
            count_refusal("idle_connection")
            self.transport.close()
            return
        self._refuse(408, "request_header_timeout", "request headers not received in time")

    def _refuse(self, status: int, reason: str, message: str) -> None:
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self._cancel_head_timer()
        count_refusal(reason)
        phrase = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        body = message.encode("ascii")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, phrase, len(body), body)
        )
        self.transport.close()


def server_config(
    app: Any,
    limits: HttpLimits,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    lifespan: Literal["on", "off"] = "off",
) -> uvicorn.Config:
    """uvicorn's configuration for serving `app` as the local host serves (`host`/`port` are used
    only when no sockets are handed to `Server.serve`).

    One place, so that the benchmark's ceiling (`cloudscale_local.bench.ceiling`) runs the host's
    exact HTTP stack and differs only in the app.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # No logging configuration of uvicorn's own: its records reach the root logger, where the
        # host's handler writes them like any other (`cloudscale_local.host.host_logging`).
        log_config=None,
        access_log=False,
        lifespan=lifespan,
        # The app decides whom to believe (CLOUDSCALE_TRUSTED_PROXIES); uvicorn must pass
        # the real socket peer, not rewrite it from X-Forwarded-For for loopback peers.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        # httptools with a bound on the request head and on the time it may take. The h11
        # parser's limit (h11_max_incomplete_event_size) only applies to a head still
        # incomplete in its buffer: a 64 KB header arriving at once passed it.
        http=bounded_protocol(limits),
        timeout_keep_alive=limits.keep_alive_seconds,
    )
