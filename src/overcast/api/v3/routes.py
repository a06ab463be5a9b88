"""/v3/routes, /v3/routes/:guid/destinations, /v3/apps/:guid/routes"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from overcast.api import presenters as present
from overcast.api.deps import (
    accepted_job,
    caller_of,
    controller_of,
    ok,
    param_pairs,
    params_of,
    urls_of,
)
from overcast.api.params import no_query, parse_list
from overcast.api.schemas import (
    CreateRoute,
    DestinationBody,
    RouteDestinations,
    RouteOptions,
    UpdateRoute,
)
from overcast.controller.routes import DestinationRequest, RouteChanges, RouteView

router = APIRouter(tags=["routes"])

FILTERS = (
    "guids",
    "hosts",
    "paths",
    "domain_guids",
    "space_guids",
    "organization_guids",
    "app_guids",
)


def _options(options: RouteOptions | None) -> dict[str, str | None] | None:
    """Only the options the body names (an explicit null resets one)."""
    if options is None:
        return None
    return {name: getattr(options, name) for name in options.model_fields_set}


def _requests(destinations: list[DestinationBody]) -> list[DestinationRequest]:
    return [
        DestinationRequest(
            app_guid=item.app.guid,
            process_type=item.app.process.type if item.app.process else "web",
            port=item.port,
            protocol=item.protocol,
            weight=item.weight,
        )
        for item in destinations
    ]


@router.post("/v3/routes", status_code=201)
async def create_route(request: Request, body: CreateRoute) -> JSONResponse:
    no_query(params_of(request))
    meta = body.metadata
    options = _options(body.options) or {}
    view = await controller_of(request).routes.create(
        await caller_of(request),
        space_guid=body.relationships.space.data.guid,
        domain_guid=body.relationships.domain.data.guid,
        host=body.host or "",
        path=body.path or "",
        port=body.port,
        load_balancing=options.get("loadbalancing"),
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.route(view, urls_of(request)), 201)


@router.get("/v3/routes")
async def list_routes(request: Request) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=FILTERS)
    page = await controller_of(request).routes.page(caller, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/routes",
            lambda item: present.route(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/routes/{guid}")
async def get_route(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    view = await controller_of(request).routes.get(await caller_of(request), guid)
    return ok(present.route(view, urls_of(request)))


@router.patch("/v3/routes/{guid}")
async def update_route(request: Request, guid: str, body: UpdateRoute) -> JSONResponse:
    no_query(params_of(request))
    meta = body.metadata
    changes = RouteChanges(
        options=_options(body.options),
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    view = await controller_of(request).routes.update(await caller_of(request), guid, changes)
    return ok(present.route(view, urls_of(request)))


@router.delete("/v3/routes/{guid}", status_code=202)
async def delete_route(request: Request, guid: str) -> Response:
    no_query(params_of(request))
    job = await controller_of(request).routes.delete(await caller_of(request), guid)
    return accepted_job(job, urls_of(request))


@router.get("/v3/apps/{guid}/routes")
async def app_routes(request: Request, guid: str) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(
        params_of(request), filters=("guids", "hosts", "paths", "domain_guids", "space_guids")
    )
    page = await controller_of(request).routes.of_app(caller, guid, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            f"/v3/apps/{guid}/routes",
            lambda item: present.route(item, urls),
            param_pairs(request),
        )
    )


# --- destinations ---------------------------------------------------------------------------


def _destinations(view: RouteView, request: Request) -> JSONResponse:
    return ok(present.route_destinations(view, urls_of(request)))


@router.get("/v3/routes/{guid}/destinations")
async def route_destinations(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    view = await controller_of(request).routes.destinations(await caller_of(request), guid)
    return _destinations(view, request)


@router.post("/v3/routes/{guid}/destinations")
async def add_destinations(request: Request, guid: str, body: RouteDestinations) -> JSONResponse:
    no_query(params_of(request))
    view = await controller_of(request).routes.add_destinations(
        await caller_of(request), guid, _requests(body.destinations)
    )
    return _destinations(view, request)


@router.patch("/v3/routes/{guid}/destinations")
async def replace_destinations(
    request: Request, guid: str, body: RouteDestinations
) -> JSONResponse:
    no_query(params_of(request))
    view = await controller_of(request).routes.replace_destinations(
        await caller_of(request), guid, _requests(body.destinations)
    )
    return _destinations(view, request)


@router.delete("/v3/routes/{guid}/destinations/{destination_guid}", status_code=204)
async def remove_destination(request: Request, guid: str, destination_guid: str) -> Response:
    no_query(params_of(request))
    await controller_of(request).routes.remove_destination(
        await caller_of(request), guid, destination_guid
    )
    return Response(status_code=204)
