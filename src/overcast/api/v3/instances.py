"""Actual state: /v3/processes/:guid/stats, restarting one instance, and /v3/x/cells."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict

from overcast.api.deps import caller_of, controller_of, ok, param_pairs, params_of, urls_of
from overcast.api.params import no_query, parse_list
from overcast.api.presenters import Json, Urls, paginated, timestamp
from overcast.controller.instances import CellInfo, InstanceStat
from overcast.models.errors import NotFound
from overcast.models.query import Page

router = APIRouter(tags=["instances"])

# CF reports a file descriptor quota per instance; Overcast does not limit it separately yet.
FDS_QUOTA = 16384


class UpdateCell(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    state: str


def _usage_time(stat: InstanceStat) -> str:
    return stat.sampled_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def present_stat(stat: InstanceStat) -> Json:
    body = _cf_stat(stat)
    if stat.state == "CRASHED":
        restart_at = stat.next_restart_at
        body["crash_count"] = stat.crash_count
        body["crash_reason"] = stat.crash_reason
        body["next_restart_at"] = None if restart_at is None else timestamp(restart_at)
    return body


def _cf_stat(stat: InstanceStat) -> Json:
    ports = [] if stat.port is None else [{"external": stat.port, "internal": stat.port}]
    running = stat.state in ("RUNNING", "STARTING", "CRASHED")
    return {
        "type": stat.process_type,
        "index": stat.index,
        "state": stat.state,
        "routable": stat.state == "RUNNING",
        "host": stat.host or "",
        "instance_ports": ports,
        "uptime": stat.uptime_seconds,
        "usage": (
            {
                "time": _usage_time(stat),
                "cpu": stat.cpu,
                "mem": stat.memory_bytes,
                "disk": stat.disk_bytes,
                "log_rate": 0,
            }
            if running
            else {}
        ),
        "mem_quota": stat.memory_quota_bytes,
        "disk_quota": stat.disk_quota_bytes,
        "fds_quota": FDS_QUOTA,
        "log_rate_limit": -1,
        "isolation_segment": None,
        "details": stat.details,
        "instance_guid": stat.instance_guid,
        "cell_id": stat.cell_id,
    }


def _stats_response(stats: list[InstanceStat]) -> JSONResponse:
    return ok({"resources": [present_stat(stat) for stat in stats]})


@router.get("/v3/processes/{guid}/stats")
async def process_stats(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    controller = controller_of(request)
    return _stats_response(await controller.instances.stats(await caller_of(request), guid))


@router.get("/v3/apps/{guid}/processes/{process_type}/stats")
async def app_process_stats(request: Request, guid: str, process_type: str) -> JSONResponse:
    no_query(params_of(request))
    controller, caller = controller_of(request), await caller_of(request)
    process = await controller.processes.by_type(caller, guid, process_type)
    return _stats_response(await controller.instances.stats(caller, process.guid))


async def _restart(request: Request, process_guid: str, index: str) -> Response:
    if not index.isdigit() or len(index) > 6:
        raise NotFound("Instance not found")
    controller = controller_of(request)
    await controller.instances.restart_instance(await caller_of(request), process_guid, int(index))
    return Response(status_code=204)


@router.delete("/v3/processes/{guid}/instances/{index}", status_code=204)
async def restart_instance(request: Request, guid: str, index: str) -> Response:
    return await _restart(request, guid, index)


@router.delete("/v3/apps/{guid}/processes/{process_type}/instances/{index}", status_code=204)
async def restart_app_instance(
    request: Request, guid: str, process_type: str, index: str
) -> Response:
    controller, caller = controller_of(request), await caller_of(request)
    process = await controller.processes.by_type(caller, guid, process_type)
    return await _restart(request, process.guid, index)


# --- /v3/x/cells ---------------------------------------------------------------------------------


def _resources(memory: int, disk: int, containers: int) -> Json:
    return {"memory_in_mb": memory, "disk_in_mb": disk, "instances": containers}


def present_cell(info: CellInfo, urls: Urls) -> Json:
    heartbeat = info.record.heartbeat

    def stamp(unix: float) -> str:
        return timestamp(datetime.fromtimestamp(unix, UTC))

    capacity = heartbeat.capacity
    body: dict[str, Any] = {
        "guid": heartbeat.cell_id,
        "zone": heartbeat.zone,
        "state": info.state.value,
        "host": heartbeat.host,
        "stacks": list(heartbeat.stacks),
        "tags": list(heartbeat.tags),
        "capacity": _resources(capacity.memory_mb, capacity.disk_mb, capacity.containers),
        "allocated": _resources(*info.record.allocated()),
        "instances": len(info.record.visible_instances()),
        "heartbeat_interval_seconds": heartbeat.interval_seconds,
        "last_heartbeat_at": stamp(heartbeat.sent_at),
        "started_at": stamp(heartbeat.started_at),
        "links": {"self": urls.link(f"/v3/x/cells/{heartbeat.cell_id}")},
    }
    return body


@router.get("/v3/x/cells")
async def list_cells(request: Request) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=("guids", "zones", "states"), timestamps=False)
    cells = controller_of(request).instances.cells(caller)
    filters = listing.query.filters
    for name, attribute in (("guids", "cell_id"), ("zones", "zone")):
        if name in filters:
            cells = [c for c in cells if getattr(c.record.heartbeat, attribute) in filters[name]]
    if "states" in filters:
        cells = [c for c in cells if c.state.value in filters["states"]]
    query = listing.query
    start = (query.page - 1) * query.per_page
    page = Page(items=cells[start : start + query.per_page], total=len(cells))
    return ok(
        paginated(
            page,
            query,
            urls,
            "/v3/x/cells",
            lambda info: present_cell(info, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/x/cells/{cell_id}")
async def get_cell(request: Request, cell_id: str) -> JSONResponse:
    no_query(params_of(request))
    info = controller_of(request).instances.cell(await caller_of(request), cell_id)
    return ok(present_cell(info, urls_of(request)))


@router.patch("/v3/x/cells/{cell_id}")
async def update_cell(request: Request, cell_id: str, body: UpdateCell) -> JSONResponse:
    controller = controller_of(request)
    info = await controller.instances.set_cell_state(await caller_of(request), cell_id, body.state)
    return ok(present_cell(info, urls_of(request)))
