"""/v3/roles and /v3/users"""

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
from overcast.api.schemas import CreateRole, CreateUser, UpdateUser
from overcast.controller.access import Caller
from overcast.controller.controller import Controller
from overcast.controller.users import UserChanges
from overcast.models.resources import Role

router = APIRouter(tags=["roles and users"])
ROLE_INCLUDES = ("user", "space", "organization")


async def _included(
    controller: Controller, caller: Caller, roles: list[Role], listing: ListRequest, urls: Urls
) -> dict[str, list[Json]] | None:
    if not listing.includes:
        return None
    included: dict[str, list[Json]] = {}
    if "user" in listing.includes:
        users = await controller.users.get_many(caller, present.guids_of(roles, "user_guid"))
        included["users"] = [present.user(user, urls) for user in users]
    if "space" in listing.includes:
        spaces = await controller.spaces.get_many(caller, present.guids_of(roles, "space_guid"))
        included["spaces"] = [present.space(space, urls) for space in spaces]
    if "organization" in listing.includes:
        orgs = await controller.orgs.get_many(caller, present.guids_of(roles, "org_guid"))
        included["organizations"] = [present.organization(org, urls) for org in orgs]
    return included


@router.get("/v3/roles")
async def list_roles(request: Request) -> JSONResponse:
    caller, controller, urls = await caller_of(request), controller_of(request), urls_of(request)
    listing = parse_list(
        params_of(request),
        filters=("guids", "types", "space_guids", "organization_guids", "user_guids"),
        includes=ROLE_INCLUDES,
    )
    page = await controller.roles.page(caller, listing.query)
    included = await _included(controller, caller, page.items, listing, urls)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/roles",
            lambda item: present.role(item, urls),
            param_pairs(request),
            included,
        )
    )


@router.post("/v3/roles", status_code=201)
async def create_role(request: Request, body: CreateRole) -> JSONResponse:
    relationships = body.relationships
    user = relationships.user.data
    role = await controller_of(request).roles.create(
        await caller_of(request),
        body.type,
        user_guid=user.guid,
        username=user.username,
        origin=user.origin,
        org_guid=relationships.organization.data.guid if relationships.organization else None,
        space_guid=relationships.space.data.guid if relationships.space else None,
    )
    return ok(present.role(role, urls_of(request)), 201)


@router.get("/v3/roles/{guid}")
async def get_role(request: Request, guid: str) -> JSONResponse:
    caller, controller, urls = await caller_of(request), controller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=(), includes=ROLE_INCLUDES)
    role = await controller.roles.get(caller, guid)
    body = present.role(role, urls)
    included = await _included(controller, caller, [role], listing, urls)
    if included is not None:
        body["included"] = included
    return ok(body)


@router.delete("/v3/roles/{guid}", status_code=202)
async def delete_role(request: Request, guid: str) -> Response:
    job = await controller_of(request).roles.delete(await caller_of(request), guid)
    return accepted_job(job, urls_of(request))


@router.get("/v3/users")
async def list_users(request: Request) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=("guids", "usernames", "origins"))
    page = await controller_of(request).users.page(caller, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/users",
            lambda item: present.user(item, urls),
            param_pairs(request),
        )
    )


@router.post("/v3/users", status_code=201)
async def create_user(request: Request, body: CreateUser) -> JSONResponse:
    meta = body.metadata
    user = await controller_of(request).users.create(
        await caller_of(request),
        body.username,
        password=body.password,
        origin=body.origin,
        admin=body.admin,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.user(user, urls_of(request)), 201)


@router.get("/v3/users/{guid}")
async def get_user(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    user = await controller_of(request).users.get(await caller_of(request), guid)
    return ok(present.user(user, urls_of(request)))


@router.patch("/v3/users/{guid}")
async def update_user(request: Request, guid: str, body: UpdateUser) -> JSONResponse:
    meta = body.metadata
    changes = UserChanges(
        password=body.password,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    user = await controller_of(request).users.update(await caller_of(request), guid, changes)
    return ok(present.user(user, urls_of(request)))


@router.delete("/v3/users/{guid}", status_code=202)
async def delete_user(request: Request, guid: str) -> Response:
    job = await controller_of(request).users.delete(await caller_of(request), guid)
    return accepted_job(job, urls_of(request))
