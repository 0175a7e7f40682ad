"""Read Bicep files with the tree-sitter Bicep grammar, for tests of `infra/`.

The Bicep compiler is a .NET tool these machines cannot install, so the tests read the
templates as syntax trees instead: `BicepFile.parse` gives a file's parameters, variables,
resources, modules and outputs; `prop` walks an object's properties; `literal` turns a literal
expression into Python data; `text` gives any node's source, for expressions that are not
literals.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tree_sitter import Node, Parser
from tree_sitter_language_pack import get_parser

__all__ = [
    "INFRA_DIR",
    "REPO_ROOT",
    "BicepFile",
    "Module",
    "NotLiteralError",
    "Param",
    "Resource",
    "at",
    "calls",
    "infra_file",
    "literal",
    "prop",
    "text",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"


class NotLiteralError(ValueError):
    """The expression is not a literal (it has references, calls or interpolation)."""


@dataclass(frozen=True)
class Param:
    """A `param`: its type, default value (if any) and decorators by name (with their argument)."""

    name: str
    type: str
    default: Node | None
    decorators: dict[str, Node | None]


@dataclass(frozen=True)
class Resource:
    """A `resource`: its symbol, type and API version, and its body object.

    `body` is the object itself even when the declaration is conditional (`= if (...) {...}`),
    whose condition is `condition`.
    """

    symbol: str
    type: str
    api_version: str
    body: Node
    existing: bool
    condition: Node | None


@dataclass(frozen=True)
class Module:
    """A `module`: its symbol, the path it names (relative to the file) and its body object."""

    symbol: str
    path: str
    body: Node


@dataclass(frozen=True)
class BicepFile:
    """One parsed Bicep file. Only top-level declarations are listed (no nested child resources)."""

    path: Path
    root: Node

    @staticmethod
    def parse(path: Path) -> BicepFile:
        """Parse `path` (cached: the tests read the same files many times)."""
        return _parse(path.resolve())

    @staticmethod
    def parse_text(source: str, path: Path = Path("<text>")) -> BicepFile:
        """Parse Bicep source that is not in a file."""
        return BicepFile(path, _parser().parse(source.encode()).root_node)

    def errors(self) -> list[str]:
        """Where the grammar found a syntax error or had to assume a missing token."""
        return [
            f"{self.path}:{node.start_point[0] + 1}:{node.start_point[1] + 1}: "
            f"{'missing ' + node.type if node.is_missing else 'syntax error near ' + repr(text(node)[:40])}"
            for node in _walk(self.root)
            if node.is_error or node.is_missing
        ]

    def params(self) -> dict[str, Param]:
        """Every `param`, by name."""
        found: dict[str, Param] = {}
        for node, decorators in self._declarations("parameter_declaration"):
            name, type_node, *rest = node.named_children
            default = rest[0] if rest else None
            found[text(name)] = Param(text(name), text(type_node), default, decorators)
        return found

    def variables(self) -> dict[str, Node]:
        """Every `var`, by name, with its value expression."""
        return {
            text(node.named_children[0]): node.named_children[-1]
            for node, _ in self._declarations("variable_declaration")
        }

    def outputs(self) -> dict[str, Node]:
        """Every `output`, by name, with its value expression."""
        return {
            text(node.named_children[0]): node.named_children[-1]
            for node, _ in self._declarations("output_declaration")
        }

    def resources(self, type_name: str | None = None) -> list[Resource]:
        """Every `resource`, or those of `type_name` (e.g. `Microsoft.Storage/storageAccounts`)."""
        found = []
        for node, _ in self._declarations("resource_declaration"):
            symbol, type_string, value = node.named_children
            resource_type, _, api_version = literal(type_string).partition("@")
            condition = None
            if value.type == "if_statement":
                condition, value = value.named_children
            if value.type != "object":
                raise NotLiteralError(f"{self.path}: resource {text(symbol)} is not an object or a condition")
            existing = any(child.type == "existing" for child in node.children)
            found.append(Resource(text(symbol), resource_type, api_version, value, existing, condition))
        return [resource for resource in found if type_name is None or resource.type == type_name]

    def resource(self, symbol: str) -> Resource:
        """The resource declared as `symbol`."""
        matches = [resource for resource in self.resources() if resource.symbol == symbol]
        if not matches:
            raise KeyError(f"{self.path}: no resource {symbol!r}")
        return matches[0]

    def modules(self) -> list[Module]:
        """Every `module`."""
        found = []
        for node, _ in self._declarations("module_declaration"):
            symbol, path, body = node.named_children
            found.append(Module(text(symbol), literal(path), body))
        return found

    def module(self, symbol: str) -> Module:
        """The module declared as `symbol`."""
        matches = [module for module in self.modules() if module.symbol == symbol]
        if not matches:
            raise KeyError(f"{self.path}: no module {symbol!r}")
        return matches[0]

    def strings(self) -> list[str]:
        """The source of every string literal, interpolations included, without the quotes."""
        return [_string_source(node) for node in _walk(self.root) if node.type == "string"]

    def code(self) -> str:
        """The file's tokens without its comments, space-separated: what a deployment would see."""
        return " ".join(
            text(node)
            for node in _walk(self.root)
            if not node.children and node.type not in ("comment", "diagnostic_comment")
        )

    def _declarations(self, node_type: str) -> Iterator[tuple[Node, dict[str, Node | None]]]:
        """Top-level declarations of one kind, each with the decorators written above it."""
        decorators: dict[str, Node | None] = {}
        for node in self.root.named_children:
            if node.type == "decorators":
                decorators = _decorators(node)
                continue
            if node.type == "comment":
                continue
            if node.type == node_type:
                yield node, decorators
            decorators = {}


def infra_file(relative: str) -> BicepFile:
    """A Bicep file under `infra/`, e.g. `infra_file("modules/kusto.bicep")`."""
    return BicepFile.parse(INFRA_DIR / relative)


def at(node: Node, *path: str) -> Node:
    """The value of the object property at `path`; `KeyError` naming the path if there is none."""
    found = prop(node, *path)
    if found is None:
        raise KeyError(f"no property {'.'.join(path)} in {text(node)[:60]!r}")
    return found


def prop(node: Node, *path: str) -> Node | None:
    """The value of the object property at `path` (`prop(body, "properties", "sku")`), or None."""
    current: Node | None = node
    for key in path:
        if current is None or current.type != "object":
            return None
        current = next((item.named_children[-1] for item in _properties(current) if _key(item) == key), None)
    return current


def literal(node: Node) -> Any:
    """A literal expression as Python data; `NotLiteralError` for anything else."""
    kind = node.type
    if kind == "string":
        if any(child.type == "interpolation" for child in node.named_children):
            raise NotLiteralError(f"interpolated string: {text(node)}")
        return "".join(_unescape(child) for child in node.named_children)
    if kind == "number":
        return int(text(node))
    if kind == "boolean":
        return text(node) == "true"
    if kind == "null":
        return None
    if kind == "array":
        return [literal(item) for item in node.named_children if item.type != "comment"]
    if kind == "object":
        return {_key(item): literal(item.named_children[-1]) for item in _properties(node)}
    raise NotLiteralError(f"not a literal: {text(node)}")


def calls(node: Node, function: str) -> list[list[Node]]:
    """Every call of `function` at or below `node`: the argument nodes of each call."""
    return [
        list(call.named_children[-1].named_children)
        for call in _walk(node)
        if call.type == "call_expression" and text(call.named_children[0]) == function
    ]


def text(node: Node) -> str:
    """The node's source text."""
    return (node.text or b"").decode()


@functools.cache
def _parse(path: Path) -> BicepFile:
    return BicepFile(path, _parser().parse(path.read_bytes()).root_node)


@functools.cache
def _parser() -> Parser:
    return get_parser("bicep")


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _properties(node: Node) -> list[Node]:
    return [item for item in node.named_children if item.type == "object_property"]


def _key(item: Node) -> str:
    """An object property's key: an identifier, or a quoted string such as 'odata.type'."""
    key = item.named_children[0]
    return literal(key) if key.type == "string" else text(key)


def _decorators(node: Node) -> dict[str, Node | None]:
    found: dict[str, Node | None] = {}
    for decorator in node.named_children:
        call = decorator.named_children[0]
        name, arguments = call.named_children[0], call.named_children[-1]
        found[text(name)] = arguments.named_children[0] if arguments.named_children else None
    return found


def _string_source(node: Node) -> str:
    source = text(node)
    quote = "'''" if source.startswith("'''") else "'"
    return source[len(quote) : -len(quote)]


_ESCAPES = {"\\'": "'", "\\\\": "\\", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$"}


def _unescape(part: Node) -> str:
    return _ESCAPES.get(text(part), text(part)) if part.type == "escape_sequence" else text(part)
