"""The privacy stage's functions: record an erasure, follow it, and the timer that runs them.

`POST /api/privacy/erasures` only records the erasure (status `pending`) and answers 202 with
its `Location`; the `privacy_erasures` timer runs every recorded erasure to completion
(`privacy.erasure.ErasureRunner.run_due`), and finishes one whose runner died once its lease
expired. `cloudscale erase` records and runs one in its own process instead.

Both routes are `AuthLevel.ADMIN`: on Azure they need the master key, which is what an operator
holds and no producer does; the local host serves them to loopback peers only.
"""

from __future__ import annotations

import logging

import azure.functions as func

from privacy.requests import ERASURE_ID, InvalidErasureRequestError, parse_erasure_request
from shared.assembly import erasure_runner
from shared.http import error_response, json_response
from shared.ports import PortError
from shared.settings import SettingsError
from shared.telemetry import invocation_span

__all__ = ["RUN_BUDGET_SECONDS", "bp"]

logger = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves __init__ unannotated

RUN_BUDGET_SECONDS = 240.0
"""A timer run stops starting work after this long: under host.json's `functionTimeout` (5 min),
so the host never cuts a run short. An erasure still running then continues at the next run."""


@bp.function_name("create_erasure")
@bp.route(route="privacy/erasures", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def create_erasure(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Record an erasure of one subject; 202 with its status (`pending`: the timer runs it)."""
    with invocation_span(context, "create erasure"):
        try:
            body = parse_erasure_request(req.get_body())
        except InvalidErasureRequestError as exc:
            return error_response(400, "invalid_request", exc.message, details=list(exc.details))
        try:
            request = await erasure_runner().request(body.subject(), suppress=body.suppress)
        except SettingsError:
            logger.exception("the privacy stage is misconfigured")
            return error_response(503, "misconfigured", "the service is misconfigured; see its log", retry_after=60)
        except PortError as exc:
            logger.warning("recording an erasure failed: %s", exc)
            return error_response(
                503, "store_unavailable", "the privacy store is unavailable; retry later", retry_after=5
            )
        return json_response(202, request.to_status(), {"Location": f"/api/privacy/erasures/{request.id}"})


@bp.function_name("get_erasure")
@bp.route(route="privacy/erasures/{erasureId}", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def get_erasure(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """The erasure's status: each step's counts, and when it finished; 404 if there is none."""
    erasure_id = req.route_params.get("erasureId", "")
    with invocation_span(context, "get erasure"):
        if not ERASURE_ID.fullmatch(erasure_id):
            return error_response(404, "not_found", "there is no such erasure")
        try:
            record = await erasure_runner().get_record(erasure_id)
        except SettingsError:
            logger.exception("the privacy stage is misconfigured")
            return error_response(503, "misconfigured", "the service is misconfigured; see its log", retry_after=60)
        except PortError as exc:
            logger.warning("reading erasure %s failed: %s", erasure_id, exc)
            return error_response(
                503, "store_unavailable", "the privacy store is unavailable; retry later", retry_after=5
            )
        if record is None:
            return error_response(404, "not_found", f"there is no erasure {erasure_id}")
        return json_response(200, record.to_status())


@bp.function_name("privacy_erasures")
@bp.timer_trigger(schedule="%CLOUDSCALE_ERASURE_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
async def privacy_erasures(timer: func.TimerRequest, context: func.Context) -> None:
    """Run every recorded erasure that no live runner holds to completion, within the run's budget."""
    with invocation_span(context, "run erasures"):
        finished = await erasure_runner().run_due(RUN_BUDGET_SECONDS)
    for record in finished:
        logger.info("erasure %s finished", record.id)
