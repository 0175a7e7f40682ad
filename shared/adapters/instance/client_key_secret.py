"""The client-key secret kept in the data folder (embedded backend, without the setting).

Client keys are HMACs under a secret (see `shared.domain.client_identity`). The composition
root (`Container.client_key_secret`) takes `CLOUDSCALE_CLIENT_KEY_SECRET` when it is set, and
requires it on Azure; otherwise it asks here for a random key generated once and kept in the
data folder, readable by its owner only, so every host process on the machine shares it and a
restart keeps the buckets. The secret is never logged.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path
from typing import Final

from shared.settings import SettingsError

__all__ = ["CLIENT_KEY_SECRET_FILE", "data_folder_secret"]

CLIENT_KEY_SECRET_FILE: Final = "client-key.secret"
_SECRET_BYTES: Final = 32
_READ_ATTEMPTS: Final = 100


def data_folder_secret(data_dir: Path) -> bytes:
    """The secret kept in `data_dir`, generated on first use; `SettingsError` if the file is damaged."""
    return _file_secret(data_dir / CLIENT_KEY_SECRET_FILE)


def _file_secret(path: Path) -> bytes:
    """Read the secret at `path`, creating it (mode 0600) if no process has yet.

    Written whole to a file of this process's own, then linked into place: `link` fails if
    the name exists, so of several processes starting at once exactly one secret wins, and no
    reader ever sees a half-written or empty file, even if the disk fills or the process dies
    midway (what is left then is a stray temporary file, never a broken secret).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return _read_secret(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(_SECRET_BYTES))
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    # Another process may have created the file and not written it yet: wait a little (bounded).
    for _ in range(_READ_ATTEMPTS):
        text = path.read_text(encoding="ascii").strip()
        if len(text) >= 2 * _SECRET_BYTES:
            return text.encode()
        time.sleep(0.01)
    raise SettingsError(f"{path} holds no complete client-key secret; delete it to generate a new one")
