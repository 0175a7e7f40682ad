"""A Functions app whose instances start until a marker file appears, then fail to start (on purpose).

It stands for a replacement instance that cannot start while the run is already serving (a file
briefly unavailable, memory): the healthy instances must go on serving.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import azure.functions as func

_MARKER = os.environ.get("CLOUDSCALE_TEST_FAIL_MARKER")
if multiprocessing.parent_process() is not None and _MARKER and Path(_MARKER).exists():
    raise RuntimeError("this replacement cannot start (on purpose)")

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.route(route="ping", methods=["GET"])
def ping(req: func.HttpRequest) -> func.HttpResponse:
    """Answers 200 `pid`: which instance served."""
    return func.HttpResponse(str(os.getpid()), status_code=200)
