"""/v3/domains (list, create, read, update, delete), /v3/audit_events, /v3/jobs"""

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
from overcast.api.schemas import CreateDomain, UpdateDomain
from overcast.models.errors import Unprocessable

router = APIRouter()


@router.get("/v3/domains", tags=["domains"])
async def list_domains(request: Request) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(
        params_of(request),
        filters=("names", "guids", "organization_guids"),
        order_by=("created_at", "updated_at", "name"),
    )
    page = await controller_of(request).domains.page(caller, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/domains",
            lambda item: present.domain(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/domains/{guid}", tags=["domains"])
async def get_domain(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    domain = await controller_of(request).domains.get(await caller_of(request), guid)
    return ok(present.domain(domain, urls_of(request)))


@router.post("/v3/domains", status_code=201, tags=["domains"])
async def create_domain(request: Request, body: CreateDomain) -> JSONResponse:
    """A shared domain (admins), or a private one for `relationships.organization` (its
    managers)."""
    no_query(params_of(request))
    relationships = body.relationships
    if (
        relationships
        and relationships.shared_organizations
        and (relationships.shared_organizations.data)
    ):
        raise Unprocessable("Sharing private domains with other organizations is not supported")
    owner = relationships.organization if relationships else None
    meta = body.metadata
    domain = await controller_of(request).domains.create(
        await caller_of(request),
        body.name,
        internal=body.internal,
        org_guid=owner.data.guid if owner and owner.data else None,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.domain(domain, urls_of(request)), 201)


@router.patch("/v3/domains/{guid}", tags=["domains"])
async def update_domain(request: Request, guid: str, body: UpdateDomain) -> JSONResponse:
    no_query(params_of(request))
    meta = body.metadata
    domain = await controller_of(request).domains.update(
        await caller_of(request),
        guid,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.domain(domain, urls_of(request)))


@router.delete("/v3/domains/{guid}", status_code=202, tags=["domains"])
async def delete_domain(request: Request, guid: str) -> Response:
    """202 + a `domain.delete` job; the domain's routes are deleted with it."""
    no_query(params_of(request))
    job = await controller_of(request).domains.delete(await caller_of(request), guid)
    return accepted_job(job, urls_of(request))


@router.get("/v3/audit_events", tags=["audit events"])
async def list_audit_events(request: Request) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(
        params_of(request), filters=("types", "target_guids", "space_guids", "organization_guids")
    )
    page = await controller_of(request).audit_events.page(caller, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/audit_events",
            lambda item: present.audit_event(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/audit_events/{guid}", tags=["audit events"])
async def get_audit_event(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    event = await controller_of(request).audit_events.get(await caller_of(request), guid)
    return ok(present.audit_event(event, urls_of(request)))


@router.get("/v3/jobs/{guid}", tags=["jobs"])
async def get_job(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    job = await controller_of(request).jobs.get(await caller_of(request), guid)
    return ok(present.job(job, urls_of(request)))
