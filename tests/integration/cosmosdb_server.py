"""Run the real `@vercel/cosmosdb-server` Cosmos DB emulator (the project-local npm install).

It speaks the Cosmos DB REST API over HTTPS with a self-signed certificate, keeps everything
in memory and accepts any account key. Started through its own CLI (`lib/cli.js`, the
package's `cosmosdb-server` bin) on 127.0.0.1 with `--port 0`; the port it got is read from
its start-up line ("Ready to accept HTTPS connections at 127.0.0.1:<port>").
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "COSMOSDB_SERVER",
    "CosmosDBServerMissingError",
    "connection_string",
    "find_cosmosdb_server",
    "run_cosmosdb_server",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / ".emulators" / "node_modules" / "@vercel" / "cosmosdb-server"
COSMOSDB_SERVER = PACKAGE / "lib" / "cli.js"

# The Cosmos DB emulator's published development key; cosmosdb-server accepts any key.
ACCOUNT_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XyJJbJQ=="

_READY = re.compile(rb"Ready to accept HTTPS connections at 127\.0\.0\.1:(\d+)")

# cosmosdb-server 1.0.1 answers a point read of a missing document with 500 instead of 404:
# lib/handler/read-document.js reads a property of the undefined lookup result when the
# container has a partition key. Cosmos DB answers 404 NotFound, which is what the event
# store's contract is about, so this preload wraps that one handler (before the router takes
# its reference) and answers 404 for exactly that TypeError. Everything else is untouched.
_READ_DOCUMENT_FIX = """
const handlerModule = require(%s);
const original = handlerModule.default;
handlerModule.default = (account, req, res, params) => {
  try {
    return original(account, req, res, params);
  } catch (err) {
    if (!(err instanceof TypeError) || !/reading '/.test(err.message)) throw err;
    res.statusCode = 404;
    return { code: "NotFound", message: "Entity with the specified id does not exist in the system." };
  }
};
"""


class CosmosDBServerMissingError(RuntimeError):
    """Node or the cosmosdb-server package is not installed."""


def find_cosmosdb_server() -> Path:
    """The package's CLI script, or `CosmosDBServerMissingError` saying what to install."""
    if shutil.which("node") is None:
        raise CosmosDBServerMissingError("`node` is not on PATH (cosmosdb-server needs Node.js 20)")
    if not COSMOSDB_SERVER.exists():
        raise CosmosDBServerMissingError(
            f"{COSMOSDB_SERVER} is missing; run `make emulators` "
            "(npm install --prefix .emulators @vercel/cosmosdb-server --no-audit --no-fund)"
        )
    return COSMOSDB_SERVER


def connection_string(port: int) -> str:
    """A connection string for the emulator listening on `port` (use it with TLS verification off)."""
    return f"AccountEndpoint=https://127.0.0.1:{port}/;AccountKey={ACCOUNT_KEY};"


@contextmanager
def run_cosmosdb_server(cli: Path, workdir: Path, start_timeout: float = 30.0) -> Iterator[str]:
    """Start cosmosdb-server in `workdir`, yield its connection string once it listens, stop it."""
    node = shutil.which("node")
    if node is None:
        raise CosmosDBServerMissingError("`node` is not on PATH")
    fix = workdir / "read-document-404.js"
    fix.write_text(_READ_DOCUMENT_FIX % json.dumps(str(cli.parent / "handler" / "read-document.js")))
    log_path = workdir / "cosmosdb-server.log"
    command = [node, "--require", str(fix), str(cli), "--host", "127.0.0.1", "--port", "0"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    try:
        port = _wait_until_ready(process, start_timeout, log_path)
        yield connection_string(port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], timeout: float, log_path: Path) -> int:
    deadline = time.monotonic() + timeout
    while True:
        ready = _READY.search(log_path.read_bytes())
        if ready:
            return int(ready.group(1))
        if process.poll() is not None:
            raise RuntimeError(f"cosmosdb-server exited with {process.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"cosmosdb-server did not start within {timeout} s:\n{log_path.read_text()}")
        time.sleep(0.05)
