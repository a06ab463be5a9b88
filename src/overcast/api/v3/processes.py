"""/v3/processes"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from overcast.api import presenters as present
from overcast.api.deps import caller_of, controller_of, ok, param_pairs, params_of, urls_of
from overcast.api.params import no_query, parse_list
from overcast.api.schemas import ScaleProcess, UpdateProcess
from overcast.controller.processes import UNSET, HealthCheckChange, ProcessChanges, Scale

router = APIRouter(tags=["processes"])
FILTERS = ("guids", "types", "app_guids", "space_guids", "organization_guids")


def scale_of(body: ScaleProcess) -> Scale:
    return Scale(
        instances=body.instances,
        memory_in_mb=body.memory_in_mb,
        disk_in_mb=body.disk_in_mb,
        log_rate_limit_in_bytes_per_second=body.log_rate_limit_in_bytes_per_second,
    )


def process_changes(body: UpdateProcess) -> ProcessChanges:
    check = body.health_check
    data = check.data if check else None
    health = None
    if check is not None:
        health = HealthCheckChange(
            type=check.type,
            endpoint=data.endpoint if data else None,
            timeout=data.timeout if data else None,
            invocation_timeout=data.invocation_timeout if data else None,
            interval=data.interval if data else None,
        )
    meta = body.metadata
    return ProcessChanges(
        command=body.command if "command" in body.model_fields_set else UNSET,
        health_check=health,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )


@router.get("/v3/processes")
async def list_processes(request: Request) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=FILTERS)
    page = await controller_of(request).processes.page(caller, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/processes",
            lambda item: present.process(item, urls, in_list=True),
            param_pairs(request),
        )
    )


@router.get("/v3/processes/{guid}")
async def get_process(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    process = await controller_of(request).processes.get(await caller_of(request), guid)
    return ok(present.process(process, urls_of(request)))


@router.patch("/v3/processes/{guid}")
async def update_process(request: Request, guid: str, body: UpdateProcess) -> JSONResponse:
    process = await controller_of(request).processes.update(
        await caller_of(request), guid, process_changes(body)
    )
    return ok(present.process(process, urls_of(request)))


@router.post("/v3/processes/{guid}/actions/scale", status_code=202)
async def scale_process(request: Request, guid: str, body: ScaleProcess) -> JSONResponse:
    process = await controller_of(request).processes.scale(
        await caller_of(request), guid, scale_of(body)
    )
    return ok(present.process(process, urls_of(request)), 202)
