"""A Functions app that loads in the supervisor but not in an instance process (on purpose).

The supervisor checks the app before starting instances; this one passes that check and
then fails in every instance, as an app would whose import depends on its process.
"""

from __future__ import annotations

import multiprocessing

import azure.functions as func

if multiprocessing.parent_process() is not None:
    raise RuntimeError("this instance cannot start (on purpose)")

app = func.FunctionApp()
