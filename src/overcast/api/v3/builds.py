"""/v3/builds, /v3/apps/:guid/builds, /v3/buildpacks, and the signed URLs through which a
staging cell hands back its droplet or its failure (`/v3/x/staging/:build/...`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from overcast.api import presenters as present
from overcast.api.deps import (
    caller_of,
    controller_of,
    ok,
    param_pairs,
    params_of,
    signature_of,
    urls_of,
)
from overcast.api.params import no_query, parse_list
from overcast.api.schemas import CreateBuild, UpdateBuild
from overcast.controller.apps import Lifecycle

router = APIRouter(tags=["builds"])

FILTERS = ("guids", "app_guids", "package_guids", "states", "space_guids", "organization_guids")
# The cell's droplet upload: as large as a droplet may be (the middleware's per-route limit).
STAGED_DROPLET_PATH = r"^/v3/x/staging/[^/]+/droplet$"


@router.post("/v3/builds", status_code=201)
async def create_build(request: Request, body: CreateBuild) -> JSONResponse:
    no_query(params_of(request))
    meta = body.metadata
    data = body.lifecycle.data if body.lifecycle else None
    lifecycle = (
        Lifecycle(
            type=body.lifecycle.type,
            buildpacks=tuple(data.buildpacks) if data and data.buildpacks is not None else None,
            stack=data.stack if data else None,
        )
        if body.lifecycle
        else None
    )
    build = await controller_of(request).builds.create(
        await caller_of(request),
        body.package.guid,
        lifecycle=lifecycle,
        staging_memory_in_mb=body.staging_memory_in_mb,
        staging_disk_in_mb=body.staging_disk_in_mb,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.build(build, urls_of(request)), 201)


@router.get("/v3/builds")
async def list_builds(request: Request) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=FILTERS)
    page = await controller_of(request).builds.page(caller, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/builds",
            lambda item: present.build(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/builds/{guid}")
async def get_build(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    build = await controller_of(request).builds.get(await caller_of(request), guid)
    return ok(present.build(build, urls_of(request)))


@router.patch("/v3/builds/{guid}")
async def update_build(request: Request, guid: str, body: UpdateBuild) -> JSONResponse:
    no_query(params_of(request))
    meta = body.metadata
    build = await controller_of(request).builds.update(
        await caller_of(request),
        guid,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.build(build, urls_of(request)))


@router.get("/v3/apps/{guid}/builds")
async def app_builds(request: Request, guid: str) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=("guids", "states"))
    page = await controller_of(request).builds.of_app(caller, guid, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            f"/v3/apps/{guid}/builds",
            lambda item: present.build(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/buildpacks")
async def list_buildpacks(request: Request) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=("names", "stacks"))
    page = await controller_of(request).buildpacks.page(caller, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/buildpacks",
            lambda item: present.buildpack(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/buildpacks/{guid}")
async def get_buildpack(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    buildpack = await controller_of(request).buildpacks.get(await caller_of(request), guid)
    return ok(present.buildpack(buildpack, urls_of(request)))


@router.post("/v3/x/staging/{guid}/droplet", status_code=201, tags=["extensions"])
async def staged_droplet(request: Request, guid: str) -> JSONResponse:
    """The cell's droplet (the raw tarball as the body), by signed URL: the build ends STAGED."""
    expires, signature = signature_of(request)
    build = await controller_of(request).builds.accept_droplet(
        guid, expires, signature, request.stream()
    )
    return ok({"guid": build.guid, "state": build.state.value}, 201)


@router.post("/v3/x/staging/{guid}/failure", tags=["extensions"])
async def staging_failure(request: Request, guid: str) -> JSONResponse:
    """The cell's report of a failed staging ({"reason", "detail"}), by signed URL."""
    expires, signature = signature_of(request)
    build = await controller_of(request).builds.accept_failure(
        guid, expires, signature, await request.body()
    )
    return ok({"guid": build.guid, "state": build.state.value})
