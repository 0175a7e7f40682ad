"""What `cloudscale run` says when it cannot start: one actionable message, never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO


def run(cwd: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "CLOUDSCALE_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cloudscale_local.cli.main", "run", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("instances", ["1", "2"])
def test_a_busy_port_is_named_with_what_to_do(tmp_path: Path, instances: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(REPO, tmp_path, "--port", str(port), "--instances", instances)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "another process holds port" in result.stderr
    assert "--port 7072" in result.stderr
    assert "make run PORT=7072" in result.stderr


def test_a_missing_host_json_says_what_it_is_and_where_it_was_looked_for(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run(elsewhere, tmp_path / "data", "--port", "0", "--instances", "1")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"no host.json in {elsewhere}" in result.stderr
    assert "the Functions host's settings" in result.stderr
    assert f"cd {REPO}" in result.stderr, "points at the app's folder, where host.json is"
