"""Compares a committed lock with the one `make lock` writes now: same pins, known hashes.

A lock is in sync when regenerating it changes no requirement, marker or annotation, and every
hash it lists is still one the index lists for that release. The regenerated lock may list
*more* hashes than the committed one: files uploaded to a release after it was locked (a wheel
for a newer Python, say). Failing on those would fail CI for what nobody changed, and pip, in
hash-checking mode, passes over files whose hashes a lock does not list, so the committed lock
still installs the files it was made with.

Usage: python cloudscale_local/compare_locks.py COMMITTED REGENERATED (exit 1, with the reasons, if they
differ). Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Lock", "compare", "parse"]

HASH_PREFIX = "--hash="
CONTINUATION = " \\"


@dataclass(frozen=True, slots=True)
class Lock:
    """A requirements lock split into its text without hashes and the hashes of each requirement."""

    text: list[str]
    hashes: dict[str, frozenset[str]]


def parse(content: str) -> Lock:
    """Splits a `--generate-hashes` lock into its hash-free lines and each requirement's hashes."""
    text: list[str] = []
    hashes: dict[str, set[str]] = {}
    requirement: str | None = None
    for raw in content.splitlines():
        line = raw.removesuffix(CONTINUATION).rstrip()
        stripped = line.strip()
        if stripped.startswith(HASH_PREFIX):
            if requirement is None:
                raise ValueError(f"a hash before any requirement: {stripped}")
            hashes[requirement].add(stripped.removeprefix(HASH_PREFIX))
            continue
        if stripped and not stripped.startswith("#") and not line.startswith(" "):
            requirement = stripped
            hashes.setdefault(requirement, set())
        text.append(line)
    return Lock(text=text, hashes={name: frozenset(found) for name, found in hashes.items()})


def compare(committed: str, regenerated: str, name: str = "lock") -> list[str]:
    """The reasons `committed` is not in sync with `regenerated`; empty when it is."""
    old, new = parse(committed), parse(regenerated)
    problems: list[str] = []
    if old.text != new.text:
        diff = difflib.unified_diff(old.text, new.text, f"{name} (committed)", f"{name} (regenerated)", lineterm="")
        problems.append("pins, markers or annotations differ:\n" + "\n".join(list(diff)[:60]))
    for requirement, hashes in old.hashes.items():
        unknown = hashes - new.hashes.get(requirement, frozenset())
        if requirement in new.hashes and unknown:
            problems.append(f"{requirement}: hashes the index does not list: {', '.join(sorted(unknown))}")
    return problems


def main(argv: list[str]) -> int:
    """Command line: compare two lock files, print why they differ."""
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    committed, regenerated = (Path(arg) for arg in argv)
    problems = compare(committed.read_text(), regenerated.read_text(), committed.name)
    for problem in problems:
        print(f"{committed.name}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
