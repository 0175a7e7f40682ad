"""The app of `builtin_generic/` with the batch annotated as `typing.List[...]`, which loads."""

import typing

import azure.functions as func

app = func.FunctionApp()


@app.function_name("process_event")
@app.service_bus_queue_trigger(
    arg_name="messages",
    queue_name="%CLOUDSCALE_EVENTS_QUEUE%",
    connection="ServiceBusConnection",
    cardinality=func.Cardinality.MANY,
)
async def process_event(messages: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006  # the point of this app
    """Count the batch (the body does not matter: only the signature is under test)."""
    del messages
