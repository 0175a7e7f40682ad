"""The Functions host's CORS middleware, in front of routing, as `func start --cors` and Flex run it.

On Flex Consumption (and Linux Consumption) the host always registers `JobHostCorsMiddleware`,
which wraps ASP.NET Core's stock `CorsMiddleware` with a policy built from `siteConfig.cors`:
the allowed origins, any header, any method, credentials off (ours). Core Tools does the same
with `--cors` (`app.UseCors(...)` before the script host). What that middleware does, and so
what `CorsPolicy` does here:

- a request without `Origin` passes untouched;
- a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered 204 at
  once, whatever its path, and never reaches a function. For an allowed origin the 204 carries
  `Access-Control-Allow-Origin` (the origin, or `*` when the policy is any origin),
  `Access-Control-Allow-Headers` echoing `Access-Control-Request-Headers` and
  `Access-Control-Allow-Methods` echoing the requested method; for any other origin it is bare;
- any other request with an allowed `Origin` gets `Access-Control-Allow-Origin` set on its
  response, replacing the function's own value, and `Vary: Origin` appended when the policy
  names more than one origin; for an origin not allowed the response is left alone.

Sources (docs/architecture.md, "The Functions host's rules"): dotnet/aspnetcore
`src/Middleware/CORS/src/Infrastructure/CorsMiddleware.cs` and `CorsService.cs`;
Azure/azure-functions-host `WebScriptHostBuilderExtension.cs` and `Configuration/CorsOptionsSetup.cs`;
Azure/azure-functions-core-tools `Actions/HostActions/Startup.cs`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["ANY_ORIGIN", "CorsPolicy", "request_header"]

ANY_ORIGIN = "*"

Message = dict[str, Any]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """Allowed origins, any header and any method, no credentials: the host's policy."""

    origins: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> CorsPolicy | None:
        """From a comma-separated list, as `func start --cors` takes it; None when it names no origin.

        Origins are lower-cased, as `CorsPolicyBuilder.WithOrigins` normalises them; a request's
        `Origin` is then compared exactly (ordinal), as `CorsPolicy.IsOriginAllowed` does.
        """
        origins = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
        return cls(origins) if origins else None

    @property
    def any_origin(self) -> bool:
        """ASP.NET Core's `AllowAnyOrigin`: the policy's one origin is `*`."""
        return self.origins == (ANY_ORIGIN,)

    def describe(self) -> str:
        """For the banner."""
        return "any origin" if self.any_origin else ", ".join(self.origins)

    def allows(self, origin: str) -> bool:
        return bool(origin) and (self.any_origin or origin in self.origins)

    def preflight_headers(self, origin: str, method: str, requested_headers: str | None) -> list[tuple[bytes, bytes]]:
        """The 204's headers for a preflight from `origin`: none when the origin is not allowed."""
        if not self.allows(origin):
            return []
        headers = self._origin_headers(origin)
        # `SetCommaSeparatedValues` joins with "," and no space.
        echoed = [name.strip() for name in (requested_headers or "").split(",") if name.strip()]
        if echoed:
            headers.append((b"access-control-allow-headers", ",".join(echoed).encode("latin-1")))
        if method:
            headers.append((b"access-control-allow-methods", method.encode("latin-1")))
        return self._with_vary(headers)

    def wrap_send(self, send: Send, origin: str) -> Send:
        """`send`, setting the allowed origin on the response as it starts (the host's `OnStarting`)."""
        if not self.allows(origin):
            return send
        added = self._with_vary(self._origin_headers(origin))

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(name, value) for name, value in message.get("headers", []) if name.lower() != _ACAO]
                message = {**message, "headers": [*kept, *added]}
            await send(message)

        return sending

    def _origin_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        allowed = ANY_ORIGIN if self.any_origin else origin
        return [(_ACAO, allowed.encode("latin-1"))]

    def _with_vary(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        # Appended (another `Vary` line), never replacing the function's own.
        if len(self.origins) > 1:
            headers.append((b"vary", b"Origin"))
        return headers


_ACAO = b"access-control-allow-origin"


def request_header(scope: dict[str, Any], name: bytes) -> str | None:
    """A request header's value, repeated lines joined with "," as the host's `StringValues` does."""
    values = [value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name]
    return ",".join(value for value in values if value) if values else None
