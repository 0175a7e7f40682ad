"""A Service Bus batch function annotated with a builtin generic, `list[func.ServiceBusMessage]`.

The Python worker refuses to load it ("binding messages has invalid non-type annotation"):
its loader (`Registry.validate_function_params` in `azure_functions_runtime/functions.py`,
and the same check in the 3.11/3.12 worker's `azure_functions_worker/functions.py`) accepts
a class or a `typing` generic, and `list[...]` is neither. The worker then fails its init
request, so the host serves none of the app's functions. `typing_list/` is the same app
written the way the worker accepts.
"""

import azure.functions as func

app = func.FunctionApp()


@app.function_name("process_event")
@app.service_bus_queue_trigger(
    arg_name="messages",
    queue_name="%CLOUDSCALE_EVENTS_QUEUE%",
    connection="ServiceBusConnection",
    cardinality=func.Cardinality.MANY,
)
async def process_event(messages: list[func.ServiceBusMessage]) -> None:
    """Count the batch (the body does not matter: the worker refuses the signature)."""
    del messages
