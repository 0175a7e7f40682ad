"""The local client-key secret file is never left empty or half written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

WRITE_UNDER_A_FULL_DISK = """
import resource, sys
from pathlib import Path
from shared.adapters.instance.client_key_secret import data_folder_secret
# No file may grow: the write of the secret fails (EFBIG), as on a full disk.
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    data_folder_secret(Path(sys.argv[1]))
except OSError:
    sys.exit(3)
"""


def test_a_secret_whose_write_fails_leaves_nothing_behind_and_the_next_start_makes_one(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[3]
    result = subprocess.run(
        [sys.executable, "-c", WRITE_UNDER_A_FULL_DISK, str(tmp_path)], cwd=repo, capture_output=True, timeout=60
    )
    assert result.returncode == 3, result.stderr
    # no secret file (an empty one would break every later start), no stray temporary file
    assert list(tmp_path.iterdir()) == []

    from shared.adapters.instance.client_key_secret import data_folder_secret

    secret = data_folder_secret(tmp_path)
    assert len(secret) >= 32
