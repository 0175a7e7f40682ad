"""One change-feed instance in a process of its own, for the crash tests.

`python -m tests.integration.changefeed_instance DATA_DIR OUT_FILE` indexes a small app whose
Cosmos DB trigger sets short lease intervals in its binding, runs its change feed over the
data folder's event store and lease file, and appends `tenant event-id sequence` to OUT_FILE
for every document it is given (written at once: a SIGKILL loses no line already written).
It prints `ready` once started, and stops gracefully on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import azure.functions as func

from cloudscale_local.host.changefeed_trigger import ChangeFeedTrigger
from cloudscale_local.host.functions import index_functions
from cloudscale_local.host.leases import LeaseStore
from shared.adapters.event_store.embedded_event_store import EmbeddedEventStore

ACQUIRE_MS = 200
RENEW_MS = 500
EXPIRATION_MS = 3000
POLL_MS = 100


def build_app(out: Path) -> func.FunctionApp:
    app = func.FunctionApp()
    descriptor = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @app.function_name("record")
    @app.cosmos_db_trigger(
        arg_name="documents",
        connection="CosmosDBConnection",
        database_name="cloudscale",
        container_name="events",
        lease_acquire_interval=ACQUIRE_MS,
        lease_renew_interval=RENEW_MS,
        lease_expiration_interval=EXPIRATION_MS,
        feed_poll_delay=POLL_MS,
    )
    async def record(documents: func.DocumentList) -> None:
        lines = "".join(f"{d['tenantId']} {d['eventId']} {d['_lsn']}\n" for d in documents)
        os.write(descriptor, lines.encode())

    return app


async def main(data_dir: Path, out: Path) -> None:
    [function] = index_functions(build_app(out)).change_feed
    store = EmbeddedEventStore(data_dir / "events.sqlite3")
    leases = LeaseStore(data_dir / "leases.sqlite3")
    trigger = ChangeFeedTrigger(function, store, leases)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    trigger.start()
    print("ready", trigger.owner, flush=True)
    await stop.wait()
    await trigger.stop(grace_seconds=5)
    leases.close()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
