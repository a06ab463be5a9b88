"""/v3/x/health: what the health service reads and asks of the controller (admins only).

GET  /v3/x/health/desired  desired state of every process, in bulk
POST /v3/x/health/actions  starts, stops, crashes and waiting restarts, checked against it
GET  /v3/x/health          whether the health service reports, and what was done for it
"""

from __future__ import annotations

import dataclasses

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from overcast.api.deps import caller_of, controller_of, ok, params_of
from overcast.api.params import no_query
from overcast.controller.health import HealthActions, HealthManagement

router = APIRouter(tags=["health (x)"])

ACTIONS_PATH = r"^/v3/x/health/actions$"
# A full request (10,000 entries in each list) is several MB: more than other bodies may be.
MAX_ACTIONS_BODY_BYTES = 16 * 1024 * 1024


async def _health(request: Request) -> HealthManagement:
    health = controller_of(request).health
    health.authorize(await caller_of(request))
    return health


@router.get("/v3/x/health")
async def health_status(request: Request) -> JSONResponse:
    no_query(params_of(request))
    return ok(await (await _health(request)).status())


@router.get("/v3/x/health/desired")
async def desired_state(request: Request) -> JSONResponse:
    no_query(params_of(request))
    return ok(await (await _health(request)).desired())


@router.post("/v3/x/health/actions")
async def health_actions(request: Request, body: HealthActions) -> JSONResponse:
    no_query(params_of(request))
    results = await (await _health(request)).act(body)
    return ok(dataclasses.asdict(results))
