"""An ASGI app that serves a Functions app's HTTP triggers the way the Functions host does.

Requests under `/<route prefix>/` are matched against each HTTP function's route and
methods, turned into a `func.HttpRequest` (method, URL, headers, query, route parameters,
body) and the function's `func.HttpResponse` is written back. As Azure's front end does,
the socket peer is appended to `X-Forwarded-For` as `ip:port`; functions never see the
socket itself. Each invocation runs under the host's request span, a child of the request's
`traceparent` (`cloudscale_local.host.invocation`), which the function gets as `context.trace_context`.
Host-level endpoints (`/metrics`) sit outside the route prefix. A method a function does not
list gets 404, as from the host's route matching; an `ADMIN`-level function is served to
loopback callers only (`cloudscale_local.host.admin_access`). With a CORS policy (`cloudscale_local.host.cors`)
the host's CORS middleware runs first: preflights are answered 204 before any of this.

A function only ever sees a whole body: a body over `HttpLimits.max_body_bytes` gets 413
(from its Content-Length, before any of it is read, or as a chunked body passes the limit),
one not received within `HttpLimits.read_timeout_seconds`, or arriving slower than
`HttpLimits.min_body_bytes_per_second` after a grace period, gets 408, and one whose client
disconnects before it is complete is dropped without an answer (there is nobody to answer).
As with Kestrel in the Functions host, the function is not invoked in any of these cases.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func
import orjson
from opentelemetry import trace

from cloudscale_local.host.admin_access import ADMIN_LEVEL, admin_refusal
from cloudscale_local.host.cors import CorsPolicy, request_header
from cloudscale_local.host.functions import HttpFunction
from cloudscale_local.host.http_limits import HttpLimits, count_refusal
from cloudscale_local.host.invocation import http_invocation
from cloudscale_local.host.request_queue import SCALE_OUT_HEADER, RequestQueue

__all__ = ["CONSOLE_PREFIX", "AsgiApp", "Gateway", "HostEndpoint", "PlainResponse"]

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONSOLE_PREFIX = "/dashboard"
"""Where the local host's own console (the dashboard and its JSON API) is served."""


class _Unread(enum.Enum):
    """Why a request's body was not read whole; the request has been answered (or dropped)."""

    ANSWERED = "answered"


@dataclass(frozen=True, slots=True)
class PlainResponse:
    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class HostEndpoint:
    """A host-level endpoint and the methods it answers; any other method gets 405 with `Allow`."""

    handler: Callable[[], Awaitable[PlainResponse]]
    methods: frozenset[str] = frozenset({"GET"})


@dataclass
class Gateway:
    """Serves `functions` under `/{route_prefix}/`, plus host endpoints, over ASGI."""

    functions: list[HttpFunction]
    route_prefix: str = "api"
    host_endpoints: Mapping[str, HostEndpoint] = field(default_factory=dict)
    on_startup: Callable[[], Awaitable[None]] | None = None
    on_shutdown: Callable[[], Awaitable[None]] | None = None
    limits: HttpLimits = field(default_factory=HttpLimits)
    request_queue: RequestQueue = field(default_factory=RequestQueue)
    """host.json's `maxConcurrentRequests` and `maxOutstandingRequests` (off unless set)."""
    cors: CorsPolicy | None = None
    """The host's CORS middleware (`cloudscale_local.host.cors`), ahead of all but the console; None: off."""
    console: AsgiApp | None = None
    """The local host's console, served under `CONSOLE_PREFIX` ahead of the CORS middleware (it
    allows no other origin) and of the request queue; None: not served."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            hook = self.on_startup if message["type"] == "lifespan.startup" else self.on_shutdown
            phase = message["type"]
            try:
                if hook is not None:
                    await hook()
            except Exception as exc:
                logger.exception("%s failed", phase)
                await send({"type": f"{phase}.failed", "message": str(exc)})
                if phase == "lifespan.shutdown":
                    return
                continue
            await send({"type": f"{phase}.complete"})
            if phase == "lifespan.shutdown":
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if self.console is not None and (path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")):
            await self.console(scope, receive, send)
            return
        method: str = scope["method"].upper()
        origin = request_header(scope, b"origin") if self.cors is not None else None
        if self.cors is not None and origin is not None:
            requested_method = request_header(scope, b"access-control-request-method")
            if method == "OPTIONS" and requested_method is not None:
                # Answered before routing, whatever the path: no function ever sees a preflight.
                headers = self.cors.preflight_headers(
                    origin, requested_method, request_header(scope, b"access-control-request-headers")
                )
                await send({"type": "http.response.start", "status": 204, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
            send = self.cors.wrap_send(send, origin)
        endpoint = self.host_endpoints.get(path)
        if endpoint is not None:
            # Drained like a function's body, so a host endpoint costs what the server does.
            if isinstance(await self._read_body(scope, receive, send), _Unread):
                return
            if method not in endpoint.methods:
                await _method_not_allowed(send, method, endpoint.methods)
                return
            plain = await endpoint.handler()
            await _send(send, plain.status, [(b"content-type", plain.content_type.encode())], plain.body)
            return
        # The host's throttle wraps everything but its admin API (the local host's own endpoints
        # above stand for that): routing, reading the body and the function itself.
        async with self.request_queue.admit() as admitted:
            if not admitted:
                count_refusal("request_queue_full")
                # Kestrel drains an unread body to keep the connection ("Request draining"),
                # so a client shed under load does not also pay for a new connection. Here a
                # small body that has arrived (or arrives at once) is read and dropped first;
                # any other is not waited for, and its connection is closed.
                headers = [(SCALE_OUT_HEADER, b"1")]
                if not (_small_enough_to_drain(scope) and await _drained(receive)):
                    headers.append((b"connection", b"close"))
                await _send(send, 429, headers, b"")
                return
            await self._route(scope, receive, send, path, method)

    async def _route(self, scope: Scope, receive: Receive, send: Send, path: str, method: str) -> None:
        prefix = f"/{self.route_prefix}" if self.route_prefix else ""
        if not path.lower().startswith(prefix.lower() + "/"):
            await _send_json(send, 404, {"error": "not_found", "message": f"no function serves {path}"})
            return
        below = path[len(prefix) :]
        for function in self.functions:
            params = function.route.match(below)
            # A method the function does not list fails the route match, as the host's
            # `HttpMethodRouteConstraint` does: 404 like any unmatched path, never 405.
            if params is None or method not in function.methods:
                continue
            if function.auth_level == ADMIN_LEVEL:
                refusal = admin_refusal(scope)
                if refusal is not None:
                    # Refused before the body is read; closing skips whatever of it is still coming.
                    count_refusal("admin_not_local")
                    await _send_json(send, 403, {"error": "forbidden", "message": refusal}, [(b"connection", b"close")])
                    return
            body = await self._read_body(scope, receive, send)
            if isinstance(body, _Unread):
                return
            await self._invoke(function, _to_request(scope, body, params), path, send)
            return
        await _send_json(send, 404, {"error": "not_found", "message": f"no function serves {method} {path}"})

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | _Unread:
        """The request's whole body, or `_Unread.ANSWERED` once the request is refused or dropped."""
        limit = self.limits.max_body_bytes
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            # Refused before reading any of it; the connection is closed so the rest is never read.
            return await self._refuse(send, 413, "request_body_too_large", f"request body over {limit} bytes")
        try:
            async with asyncio.timeout(self.limits.read_timeout_seconds):
                body = await _receive_body(receive, limit, self.limits)
        except TimeoutError:
            return await self._refuse(send, 408, "request_body_timeout", "request body not received in time")
        if body is None:
            # The client is gone: nobody to answer, and a partial body must not be ingested.
            count_refusal("client_disconnected")
            return _Unread.ANSWERED
        if isinstance(body, int):
            return await self._refuse(send, 413, "request_body_too_large", f"request body over {limit} bytes")
        return body

    async def _refuse(self, send: Send, status: int, reason: str, message: str) -> _Unread:
        count_refusal(reason)
        code = "payload_too_large" if status == 413 else "request_timeout"
        # Closing is the only way to skip the rest of a body the server has not read.
        await _send_json(send, status, {"error": code, "message": message}, [(b"connection", b"close")])
        return _Unread.ANSWERED

    async def _invoke(self, function: HttpFunction, request: func.HttpRequest, path: str, send: Send) -> None:
        with http_invocation(function.name, request.method, path, request.headers) as (context, span):
            try:
                response = await function.invoke(request, context)
            except Exception as exc:
                # As the Functions host does: a 500 for the caller, the traceback in the log.
                logger.exception("function %s failed", function.name)
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR, "the function failed")
                span.set_attribute("http.response.status_code", 500)
                await _send_json(
                    send, 500, {"error": "internal_error", "message": "the function failed; see the host log"}
                )
                return
            status, headers, body = _from_response(response)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(trace.StatusCode.ERROR)
            await _send(send, status, headers, body)


async def _method_not_allowed(send: Send, method: str, allowed: Iterable[str]) -> None:
    await _send_json(
        send,
        405,
        {"error": "method_not_allowed", "message": f"{method} is not allowed here"},
        [(b"allow", ", ".join(sorted(set(allowed))).encode())],
    )


def _to_request(scope: Scope, body: bytes, route_params: dict[str, str]) -> func.HttpRequest:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        # Repeated lines arrive joined with "," and no space, empty values left out, as the host's
        # `StringValues.ToString()` joins them (`ToRpcHttp`).
        if name not in headers:
            headers[name] = value
        elif value:
            headers[name] = f"{headers[name]},{value}" if headers[name] else value
    client = scope.get("client")
    if client:
        peer_ip, peer_port = client[0], client[1]
        hop = f"[{peer_ip}]:{peer_port}" if ":" in peer_ip else f"{peer_ip}:{peer_port}"
        forwarded = headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{forwarded}, {hop}" if forwarded else hop
    query = scope.get("query_string", b"").decode("latin-1")
    host = headers.get("host", "127.0.0.1")
    url = f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}{scope['path']}"
    if query:
        url += f"?{query}"
    return func.HttpRequest(
        method=scope["method"].upper(),
        url=url,
        headers=headers,
        params=dict(parse_qsl(query, keep_blank_values=True)),
        route_params=route_params,
        body=body,
    )


def _from_response(response: func.HttpResponse) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in response.headers.items()]
    if not any(name == b"content-type" for name, _ in headers) and response.mimetype:
        content_type = response.mimetype
        if response.charset and (content_type.startswith("text/") or content_type == "application/json"):
            content_type += f"; charset={response.charset}"
        headers.append((b"content-type", content_type.encode("latin-1")))
    return response.status_code, headers, response.get_body() or b""


async def _receive_body(receive: Receive, limit: int, limits: HttpLimits) -> bytes | int | None:
    """The whole body; None if the client left before it ended; its size so far once over `limit`.

    Raises `TimeoutError` once, after the grace period, the body has come slower on average
    than the minimum rate (checked each second, as Kestrel does).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            async with asyncio.timeout(1.0):
                message = await receive()
        except TimeoutError:
            message = {"type": "http.request", "body": b"", "more_body": True}
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return size
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        elapsed = loop.time() - started
        if elapsed > limits.body_rate_grace_seconds and size < limits.min_body_bytes_per_second * elapsed:
            raise TimeoutError


DRAIN_LIMIT_BYTES = 64 * 1024
"""The largest unread body a refusal keeps the connection for (uvicorn's read buffer's high-water mark)."""
DRAIN_SECONDS = 0.05
"""How long a refusal waits for the rest of a small body before closing instead (Kestrel drains for 5 s
after its response; here the refusal is not held back for a slow client)."""


async def _drained(receive: Receive) -> bool:
    """Read and drop the request's body; False if it is over `DRAIN_LIMIT_BYTES`, not all there in
    `DRAIN_SECONDS`, or the client left (the caller then closes the connection)."""
    received = 0
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return False
                received += len(message.get("body", b""))
                if received > DRAIN_LIMIT_BYTES:
                    return False
                if not message.get("more_body", False):
                    return True
    except TimeoutError:
        return False


def _small_enough_to_drain(scope: Scope) -> bool:
    """Whether the request declares no body, or a Content-Length of at most `DRAIN_LIMIT_BYTES`."""
    declared = _declared_length(scope)
    if declared is not None:
        return declared <= DRAIN_LIMIT_BYTES
    return not any(name == b"transfer-encoding" for name, _ in scope["headers"])


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [h for h in headers if h[0] != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(
    send: Send, status: int, body: dict[str, object], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = orjson.dumps({**body, "details": []})
    await _send(send, status, [(b"content-type", b"application/json"), *(headers or [])], payload)
