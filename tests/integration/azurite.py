"""Run the real Azurite Table emulator (the project-local npm install) for the test session."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["AZURITE_TABLE", "AzuriteMissingError", "find_azurite_table", "free_port", "run_azurite_table"]

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_TABLE = REPO_ROOT / ".emulators" / "node_modules" / ".bin" / "azurite-table"

# Azurite's fixed development account; the key is public and only valid against the emulator.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteMissingError(RuntimeError):
    """Node or the Azurite package is not installed."""


def find_azurite_table() -> Path:
    """The `azurite-table` launcher, or `AzuriteMissingError` saying what to install."""
    if shutil.which("node") is None:
        raise AzuriteMissingError("`node` is not on PATH (Azurite needs Node.js 20)")
    if not AZURITE_TABLE.exists():
        raise AzuriteMissingError(
            f"{AZURITE_TABLE} is missing; run `npm install --prefix .emulators azurite@3 --no-audit --no-fund`"
        )
    return AZURITE_TABLE


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    # Azurite accepts --tablePort 0 but never says which port it got, so we pick one ourselves.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def connection_string(port: int) -> str:
    """A connection string for the development account on the emulator listening on `port`."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"
    )


@contextmanager
def run_azurite_table(launcher: Path, workdir: Path, start_timeout: float = 30.0) -> Iterator[str]:
    """Start Azurite Table in `workdir`, yield its connection string once it accepts connections, stop it."""
    port = free_port()
    log_path = workdir / "azurite-table.log"
    command = [
        str(launcher),
        "--tableHost",
        "127.0.0.1",
        "--tablePort",
        str(port),
        "--inMemoryPersistence",
        "--disableTelemetry",
        # No --location: Azurite refuses it together with --inMemoryPersistence, and with
        # in-memory persistence nothing is written anyway; cwd keeps any stray file in `workdir`.
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_listening(process, port, start_timeout, log_path)
        yield connection_string(port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, timeout: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"Azurite Table exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Azurite Table did not listen on port {port} within {timeout} s:\n{log_path.read_text()}"
                ) from None
            time.sleep(0.1)
