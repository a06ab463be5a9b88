"""/v3/apps, their environment, actions and processes."""

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
from overcast.api.params import ListRequest, no_query, parse_list
from overcast.api.presenters import Json, Urls
from overcast.api.schemas import (
    CreateApp,
    EnvironmentVariables,
    LifecycleBody,
    ScaleProcess,
    UpdateApp,
    UpdateProcess,
)
from overcast.api.v3.processes import process_changes, scale_of
from overcast.controller.access import Caller
from overcast.controller.apps import AppChanges, Lifecycle
from overcast.controller.controller import Controller
from overcast.models.errors import UnknownEndpoint
from overcast.models.resources import App

router = APIRouter(tags=["apps"])
ORDERS = ("created_at", "updated_at", "name", "state")
INCLUDES = ("space", "space.organization")
FILTERS = ("names", "guids", "space_guids", "organization_guids", "stacks", "lifecycle_type")


def _lifecycle(body: LifecycleBody | None) -> Lifecycle | None:
    if body is None:
        return None
    data = body.data
    return Lifecycle(
        type=body.type,
        buildpacks=tuple(data.buildpacks) if data.buildpacks is not None else None,
        stack=data.stack,
    )


async def _included(
    controller: Controller, caller: Caller, apps: list[App], listing: ListRequest, urls: Urls
) -> dict[str, list[Json]] | None:
    if not listing.includes:
        return None
    spaces = await controller.spaces.get_many(caller, present.guids_of(apps, "space_guid"))
    included: dict[str, list[Json]] = {"spaces": [present.space(s, urls) for s in spaces]}
    if "space.organization" in listing.includes:
        orgs = await controller.orgs.get_many(caller, present.guids_of(spaces, "org_guid"))
        included["organizations"] = [present.organization(o, urls) for o in orgs]
    return included


@router.get("/v3/apps")
async def list_apps(request: Request) -> JSONResponse:
    caller, controller, urls = await caller_of(request), controller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=FILTERS, order_by=ORDERS, includes=INCLUDES)
    page = await controller.apps.page(caller, listing.query)
    included = await _included(controller, caller, page.items, listing, urls)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/apps",
            lambda item: present.app(item, urls),
            param_pairs(request),
            included,
        )
    )


@router.post("/v3/apps", status_code=201)
async def create_app(request: Request, body: CreateApp) -> JSONResponse:
    caller = await caller_of(request)
    meta = body.metadata
    app = await controller_of(request).apps.create(
        caller,
        body.name,
        body.relationships.space.data.guid,
        environment_variables=body.environment_variables,
        lifecycle=_lifecycle(body.lifecycle),
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.app(app, urls_of(request)), 201)


@router.get("/v3/apps/{guid}")
async def get_app(request: Request, guid: str) -> JSONResponse:
    caller, controller, urls = await caller_of(request), controller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=(), includes=INCLUDES)
    app = await controller.apps.get(caller, guid)
    body = present.app(app, urls)
    included = await _included(controller, caller, [app], listing, urls)
    if included is not None:
        body["included"] = included
    return ok(body)


@router.patch("/v3/apps/{guid}")
async def update_app(request: Request, guid: str, body: UpdateApp) -> JSONResponse:
    caller = await caller_of(request)
    meta = body.metadata
    changes = AppChanges(
        name=body.name,
        lifecycle=_lifecycle(body.lifecycle),
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    app = await controller_of(request).apps.update(caller, guid, changes)
    return ok(present.app(app, urls_of(request)))


@router.delete("/v3/apps/{guid}", status_code=202)
async def delete_app(request: Request, guid: str) -> Response:
    job = await controller_of(request).apps.delete(await caller_of(request), guid)
    return accepted_job(job, urls_of(request))


@router.post("/v3/apps/{guid}/actions/{action}")
async def app_action(request: Request, guid: str, action: str) -> JSONResponse:
    no_query(params_of(request))
    caller, apps = await caller_of(request), controller_of(request).apps
    actions = {"start": apps.start, "stop": apps.stop, "restart": apps.restart}
    run = actions.get(action)
    if run is None:
        raise UnknownEndpoint("Unknown request")
    app = await run(caller, guid)
    return ok(present.app(app, urls_of(request)))


@router.get("/v3/apps/{guid}/env")
async def app_env(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    return ok(await controller_of(request).apps.env(await caller_of(request), guid))


@router.get("/v3/apps/{guid}/manifest")
async def app_manifest(request: Request, guid: str) -> Response:
    """The manifest that would make the app as it is (YAML)."""
    no_query(params_of(request))
    text = await controller_of(request).manifests.of_app(await caller_of(request), guid)
    return Response(text, media_type="application/x-yaml")


def _env_body(guid: str, variables: dict[str, str], urls: Urls) -> Json:
    return {
        "var": variables,
        "links": {
            "self": urls.link(f"/v3/apps/{guid}/environment_variables"),
            "app": urls.link(f"/v3/apps/{guid}"),
        },
    }


@router.get("/v3/apps/{guid}/environment_variables")
async def get_environment_variables(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    app, variables = await controller_of(request).apps.environment_variables(
        await caller_of(request), guid
    )
    return ok(_env_body(app.guid, variables, urls_of(request)))


@router.patch("/v3/apps/{guid}/environment_variables")
async def patch_environment_variables(
    request: Request, guid: str, body: EnvironmentVariables
) -> JSONResponse:
    app, variables = await controller_of(request).apps.patch_environment_variables(
        await caller_of(request), guid, body.var
    )
    return ok(_env_body(app.guid, variables, urls_of(request)))


@router.get("/v3/apps/{guid}/processes")
async def app_processes(request: Request, guid: str) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=("types", "guids"))
    page = await controller_of(request).processes.of_app(caller, guid, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            f"/v3/apps/{guid}/processes",
            lambda item: present.process(item, urls, in_list=True),
            param_pairs(request),
        )
    )


@router.get("/v3/apps/{guid}/processes/{process_type}")
async def app_process(request: Request, guid: str, process_type: str) -> JSONResponse:
    no_query(params_of(request))
    process = await controller_of(request).processes.by_type(
        await caller_of(request), guid, process_type
    )
    return ok(present.process(process, urls_of(request)))


@router.patch("/v3/apps/{guid}/processes/{process_type}")
async def update_app_process(
    request: Request, guid: str, process_type: str, body: UpdateProcess
) -> JSONResponse:
    caller, processes = await caller_of(request), controller_of(request).processes
    process = await processes.by_type(caller, guid, process_type)
    updated = await processes.update(caller, process.guid, process_changes(body))
    return ok(present.process(updated, urls_of(request)))


@router.post("/v3/apps/{guid}/processes/{process_type}/actions/scale", status_code=202)
async def scale_app_process(
    request: Request, guid: str, process_type: str, body: ScaleProcess
) -> JSONResponse:
    caller, processes = await caller_of(request), controller_of(request).processes
    process = await processes.by_type(caller, guid, process_type)
    scaled = await processes.scale(caller, process.guid, scale_of(body))
    return ok(present.process(scaled, urls_of(request)), 202)
