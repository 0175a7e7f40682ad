"""The secure-delete micro-benchmark runs end to end on a tiny load and prints one line per mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudscale_local.bench.queue_secure_delete import main


def test_it_prints_a_line_per_body_size_and_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--messages", "20", "--repeats", "1", "--body-bytes", "500", "5000", "--folder", str(tmp_path)]

    assert main(args) == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in lines] == ["OFF", "ON", "FAST"] * 2
    assert all("written" in line for line in lines)
    assert list(tmp_path.iterdir()) == [], "the queue files are removed"
