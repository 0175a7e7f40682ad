"""Shell completion as the README documents it: `_CLOUDSCALE_COMPLETE=<shell>_source cloudscale`.

Run through the console script's own entry point (`cloudscale_local.cli.entry:main`) under the
name `cloudscale`, as the installed script runs, in a process of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AS_THE_CONSOLE_SCRIPT = "import sys; sys.argv[0] = 'cloudscale'; from cloudscale_local.cli.entry import main; main()"


def complete(**environment: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", AS_THE_CONSOLE_SCRIPT],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("shell", "registration"),
    [
        ("bash", "complete -o nosort -F _cloudscale_completion cloudscale"),
        ("zsh", "compdef _cloudscale_completion cloudscale"),
        ("fish", "complete --no-files --command cloudscale"),
    ],
)
def test_the_completion_script_is_produced(shell: str, registration: str) -> None:
    assert registration in complete(_CLOUDSCALE_COMPLETE=f"{shell}_source")


def test_bash_completes_a_command_and_a_subcommand() -> None:
    assert "plain,dlq" in complete(_CLOUDSCALE_COMPLETE="bash_complete", COMP_WORDS="cloudscale dl", COMP_CWORD="1")
    purge = complete(_CLOUDSCALE_COMPLETE="bash_complete", COMP_WORDS="cloudscale dlq pu", COMP_CWORD="2")
    assert purge.split() == ["plain,purge"]
