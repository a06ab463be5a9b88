"""/v3/organizations"""

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
from overcast.api.schemas import CreateOrganization, UpdateOrganization
from overcast.controller.orgs import OrgChanges

router = APIRouter(tags=["organizations"])
ORDERS = ("created_at", "updated_at", "name")


@router.get("/v3/organizations")
async def list_organizations(request: Request) -> JSONResponse:
    caller = await caller_of(request)
    listing = parse_list(params_of(request), filters=("names", "guids"), order_by=ORDERS)
    page = await controller_of(request).orgs.page(caller, listing.query)
    urls = urls_of(request)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/organizations",
            lambda org: present.organization(org, urls),
            param_pairs(request),
        )
    )


@router.post("/v3/organizations", status_code=201)
async def create_organization(request: Request, body: CreateOrganization) -> JSONResponse:
    caller = await caller_of(request)
    meta = body.metadata
    org = await controller_of(request).orgs.create(
        caller,
        body.name,
        suspended=body.suspended,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.organization(org, urls_of(request)), 201)


@router.get("/v3/organizations/{guid}")
async def get_organization(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    org = await controller_of(request).orgs.get(await caller_of(request), guid)
    return ok(present.organization(org, urls_of(request)))


@router.patch("/v3/organizations/{guid}")
async def update_organization(
    request: Request, guid: str, body: UpdateOrganization
) -> JSONResponse:
    caller = await caller_of(request)
    meta = body.metadata
    changes = OrgChanges(
        name=body.name,
        suspended=body.suspended,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    org = await controller_of(request).orgs.update(caller, guid, changes)
    return ok(present.organization(org, urls_of(request)))


@router.delete("/v3/organizations/{guid}", status_code=202)
async def delete_organization(request: Request, guid: str) -> Response:
    job = await controller_of(request).orgs.delete(await caller_of(request), guid)
    return accepted_job(job, urls_of(request))


@router.get("/v3/organizations/{guid}/domains")
async def organization_domains(request: Request, guid: str) -> JSONResponse:
    caller = await caller_of(request)
    listing = parse_list(params_of(request), filters=("names", "guids"), order_by=ORDERS)
    page = await controller_of(request).orgs.domains(caller, guid, listing.query)
    urls = urls_of(request)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            f"/v3/organizations/{guid}/domains",
            lambda item: present.domain(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/organizations/{guid}/domains/default")
async def organization_default_domain(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    domain = await controller_of(request).orgs.default_domain(await caller_of(request), guid)
    return ok(present.domain(domain, urls_of(request)))
