"""Azure Functions route templates (`events/{tenantId}/{id:guid?}`) matched against paths.

Supports what function routes use: literal segments, `{name}`, a constraint after a colon
(`int`, `guid`, `alpha`, `bool`, `long`, `double`, `datetime` and the like are checked for
the common ones, others accept any segment), an optional last parameter `{name?}` and a
catch-all `{*name}`. Matching is case-insensitive, like ASP.NET Core routing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RouteTemplate"]

_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "guid": r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "double": r"-?\d+(?:\.\d+)?",
    "decimal": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
}
_PARAMETER = re.compile(
    r"^\{(?P<star>\*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<constraint>[^}?]+))?(?P<optional>\?)?\}$"
)


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """A compiled route template."""

    template: str
    pattern: re.Pattern[str]

    @classmethod
    def compile(cls, template: str) -> RouteTemplate:
        parts = []
        for segment in template.strip("/").split("/"):
            match = _PARAMETER.match(segment)
            if match is None:
                parts.append("/" + re.escape(segment))
                continue
            name = match["name"]
            if match["star"]:
                parts.append(f"(?:/(?P<{name}>.*))?")
                continue
            constraint = (match["constraint"] or "").split("(", 1)[0].lower()
            body = _CONSTRAINTS.get(constraint, r"[^/]+")
            piece = f"/(?P<{name}>{body})"
            parts.append(f"(?:{piece})?" if match["optional"] else piece)
        return cls(template, re.compile("".join(parts) + "/?", re.IGNORECASE | re.ASCII))

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters if `path` (below the route prefix, leading slash) matches."""
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {name: value for name, value in found.groupdict().items() if value is not None}
