"""The deployment package: the app's folder as `func azure functionapp publish` zips it.

Core Tools builds the zip from `FileSystemHelpers.GetLocalFiles` with a `GitIgnoreParser`
over `.funcignore` (`src/Azure.Functions.Cli/Common/` in github.com/Azure/azure-functions-core-tools).
What that does, and what this module copies:

- directories named `.git` or `.vscode`, and files named `.funcignore`, `.gitignore`,
  `local.settings.json` or `project.lock.json`, are never included, at any depth;
- every other file's path relative to the app folder (with `/`) is left out when a
  `.funcignore` line matches its beginning: the line is a regular expression prefix, with
  `*` standing for one path segment's characters and `**` for anything; a leading `/` is
  dropped; a line starting with `!` lets matching paths back in. So `tests/` leaves out
  the top-level `tests` folder only, and `Makefile` any path that starts with `Makefile`.

The conformance tier indexes a copy made this way, so a function that imports something the
zip leaves out (the local host, the command line, the tests) fails here as it would on Azure.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FuncIgnore", "package_files", "stage_package"]

ALWAYS_LEFT_OUT_DIRECTORIES = frozenset({".git", ".vscode"})
ALWAYS_LEFT_OUT_FILES = frozenset({".funcignore", ".gitignore", "local.settings.json", "project.lock.json"})


def _pattern(line: str) -> str:
    escaped = re.sub(r"[\-\[\]/{}()+?.\\^$|]", lambda match: "\\" + match.group(0), line)
    return escaped.replace("**", "(.+)").replace("*", "([^\\/]+)")


def _union(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("^((" + ")|(".join(_pattern(pattern) for pattern in sorted(patterns)) + "))")


@dataclass(frozen=True, slots=True)
class FuncIgnore:
    """`.funcignore` read as Core Tools reads it."""

    deny: re.Pattern[str] | None
    allow: re.Pattern[str] | None

    @classmethod
    def parse(cls, text: str) -> FuncIgnore:
        deny: list[str] = []
        allow: list[str] = []
        for raw in text.split("\n"):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            line = line[1:] if negated else line
            line = line[1:] if line.startswith("/") else line
            (allow if negated else deny).append(line)
        return cls(deny=_union(deny), allow=_union(allow))

    @classmethod
    def read(cls, app_dir: Path) -> FuncIgnore:
        path = app_dir / ".funcignore"
        return cls.parse(path.read_text(encoding="utf-8") if path.exists() else "")

    def accepts(self, relative: str) -> bool:
        """Whether the file at `relative` (a `/`-separated path from the app folder) is zipped."""
        if self.allow is not None and self.allow.match(relative):
            return True
        return self.deny is None or not self.deny.match(relative)

    def denies_everything_under(self, relative_dir: str) -> bool:
        """Whether no file under the folder can be zipped, so it need not be walked: a line that
        matches the start of `dir/` matches the start of every path under it."""
        return self.allow is None and self.deny is not None and self.deny.match(relative_dir + "/") is not None


def package_files(app_dir: Path) -> list[str]:
    """The `/`-separated paths, relative to `app_dir`, of every file the zip would hold."""
    rules = FuncIgnore.read(app_dir)
    found: list[str] = []
    for root, dirs, files in os.walk(app_dir):
        # Symbolic links to folders are not followed (os.walk's default); they are left out.
        relative_root = Path(root).relative_to(app_dir).as_posix()
        prefix = "" if relative_root == "." else f"{relative_root}/"
        dirs[:] = sorted(
            name
            for name in dirs
            if name.lower() not in ALWAYS_LEFT_OUT_DIRECTORIES and not rules.denies_everything_under(prefix + name)
        )
        for name in sorted(files):
            if name.lower() in ALWAYS_LEFT_OUT_FILES:
                continue
            relative = prefix + name
            if rules.accepts(relative):
                found.append(relative)
    return found


def stage_package(app_dir: Path, target: Path) -> Path:
    """Copy the files the zip would hold from `app_dir` into `target`; returns `target`."""
    for relative in package_files(app_dir):
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(app_dir / relative, destination)
    target.mkdir(parents=True, exist_ok=True)
    return target
