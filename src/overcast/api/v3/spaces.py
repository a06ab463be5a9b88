"""/v3/spaces"""

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
from overcast.api.params import parse_list
from overcast.api.presenters import Json, Urls
from overcast.api.schemas import CreateSpace, UpdateSpace
from overcast.controller.access import Caller
from overcast.controller.controller import Controller
from overcast.controller.spaces import SpaceChanges
from overcast.models.errors import InvalidRequest, MessageParseError
from overcast.models.resources import Space

router = APIRouter(tags=["spaces"])
ORDERS = ("created_at", "updated_at", "name")


async def included_orgs(
    controller: Controller, caller: Caller, spaces: list[Space], urls: Urls
) -> list[Json]:
    orgs = await controller.orgs.get_many(caller, present.guids_of(spaces, "org_guid"))
    return [present.organization(org, urls) for org in orgs]


@router.get("/v3/spaces")
async def list_spaces(request: Request) -> JSONResponse:
    caller, controller, urls = await caller_of(request), controller_of(request), urls_of(request)
    listing = parse_list(
        params_of(request),
        filters=("names", "guids", "organization_guids"),
        order_by=ORDERS,
        includes=("organization",),
    )
    page = await controller.spaces.page(caller, listing.query)
    included = None
    if "organization" in listing.includes:
        included = {"organizations": await included_orgs(controller, caller, page.items, urls)}
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/spaces",
            lambda item: present.space(item, urls),
            param_pairs(request),
            included,
        )
    )


@router.post("/v3/spaces", status_code=201)
async def create_space(request: Request, body: CreateSpace) -> JSONResponse:
    caller = await caller_of(request)
    meta = body.metadata
    space = await controller_of(request).spaces.create(
        caller,
        body.name,
        body.relationships.organization.data.guid,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.space(space, urls_of(request)), 201)


@router.get("/v3/spaces/{guid}")
async def get_space(request: Request, guid: str) -> JSONResponse:
    caller, controller, urls = await caller_of(request), controller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=(), includes=("organization",))
    space = await controller.spaces.get(caller, guid)
    body = present.space(space, urls)
    if "organization" in listing.includes:
        body["included"] = {"organizations": await included_orgs(controller, caller, [space], urls)}
    return ok(body)


@router.patch("/v3/spaces/{guid}")
async def update_space(request: Request, guid: str, body: UpdateSpace) -> JSONResponse:
    caller = await caller_of(request)
    meta = body.metadata
    changes = SpaceChanges(
        name=body.name,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    space = await controller_of(request).spaces.update(caller, guid, changes)
    return ok(present.space(space, urls_of(request)))


@router.delete("/v3/spaces/{guid}", status_code=202)
async def delete_space(request: Request, guid: str) -> Response:
    job = await controller_of(request).spaces.delete(await caller_of(request), guid)
    return accepted_job(job, urls_of(request))


YAML_TYPES = frozenset({"application/x-yaml", "application/yaml", "text/yaml", "text/x-yaml"})


@router.post("/v3/spaces/{guid}/actions/apply_manifest")
async def apply_manifest(request: Request, guid: str) -> Response:
    """A CF manifest (YAML body) applied to the space's apps by a job: 202 + Location."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in YAML_TYPES:
        raise InvalidRequest("Content-Type must be application/x-yaml (the body is a manifest)")
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise MessageParseError("The manifest is not valid UTF-8") from None
    caller, controller = await caller_of(request), controller_of(request)
    job = await controller.manifests.apply(caller, guid, text)
    return accepted_job(job, urls_of(request))
