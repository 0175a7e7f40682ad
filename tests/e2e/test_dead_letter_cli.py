"""A poison message made as the README says, dead-lettered by a running host, then purged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import REPO, LocalHost

PARKED_WITHIN_SECONDS = 15.0


def cloudscale(data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CLOUDSCALE_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", *args],
        cwd=REPO,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def dead_letters(data_dir: Path) -> list[dict[str, Any]]:
    listed = cloudscale(data_dir, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, Any]] = json.loads(listed.stdout)
    return found


def test_send_poison_is_dead_lettered_by_the_host_and_purge_removes_it(
    host_factory: Callable[..., LocalHost],
) -> None:
    host = host_factory()
    sent = cloudscale(host.data_dir, "dlq", "send-poison")
    assert sent.returncode == 0, sent.stderr

    deadline = time.monotonic() + PARKED_WITHIN_SECONDS
    while not (found := dead_letters(host.data_dir)):
        assert time.monotonic() < deadline, "the poison message was not dead-lettered"
        time.sleep(0.2)
    [poison] = found
    assert poison["reason"] == "UndecodableMessage"
    assert poison["messageId"] in sent.stdout

    declined = cloudscale(host.data_dir, "dlq", "purge", stdin="n\n")
    assert "Delete 1 dead letter for good?" in declined.stdout
    assert len(dead_letters(host.data_dir)) == 1

    purged = cloudscale(host.data_dir, "dlq", "purge", "--yes")
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout == "Purged 1 dead letter.\n"
    assert dead_letters(host.data_dir) == []
