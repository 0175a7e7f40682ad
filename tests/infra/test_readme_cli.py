"""The README calls the command line one way (`cloudscale ...` in an activated venv), and every
command line it shows in a code block names a command and options that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click

from cloudscale_local.cli.main import main as cloudscale

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def shell_lines() -> list[str]:
    """Lines of the README's bash blocks that run `cloudscale`, from the command on."""
    lines: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            code = line.split("  #")[0].split(" # ")[0]
            match = re.search(r"(^|\$\(|\s)cloudscale ", code)
            if match and "_CLOUDSCALE_COMPLETE" not in code:
                command = code[match.end() - len("cloudscale ") :].strip()
                lines.append(command.removesuffix(")") if match.group(1) == "$(" else command)
    return lines


def test_one_way_to_call_the_command_line() -> None:
    assert ".venv/bin/cloudscale" not in README
    assert "source .venv/bin/activate" in README


def test_every_command_line_shown_exists() -> None:
    lines = shell_lines()
    assert len(lines) > 30, "the README shows the command line throughout"
    for line in lines:
        words = [word for word in shlex.split(line)[1:] if not word.startswith("<")]
        command: click.Command = cloudscale
        while isinstance(command, click.Group) and words and not words[0].startswith("-"):
            found = command.commands.get(words.pop(0))
            assert found is not None, f"no such command in {line!r}"
            command = found
        context = click.Context(command)
        options = {opt for param in command.get_params(context) for opt in param.opts}
        for word in words:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"{word} is not an option of {line!r}"
