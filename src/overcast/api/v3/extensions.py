"""/v3/x: what Cloud Foundry lacks. Jobs with their stages, and the job queues."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from overcast.api import presenters as present
from overcast.api.deps import caller_of, controller_of, ok, param_pairs, params_of, urls_of
from overcast.api.params import no_query, parse_list
from overcast.api.schemas import CreateClient, UpdateQueue

router = APIRouter(tags=["operators (x)"])


@router.get("/v3/x")
async def extensions_root(request: Request) -> JSONResponse:
    urls = urls_of(request)
    return ok(
        {
            "links": {
                "self": urls.link("/v3/x"),
                "jobs": urls.link("/v3/x/jobs"),
                "queues": urls.link("/v3/x/queues"),
                "clients": urls.link("/v3/x/clients"),
                "health": urls.link("/v3/x/health"),
            }
        }
    )


@router.get("/v3/x/jobs")
async def list_jobs(request: Request) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(
        params_of(request), filters=("guids", "states", "operations", "queues", "target_guids")
    )
    page = await controller_of(request).jobs.page(caller, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/x/jobs",
            lambda item: present.job_detail(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/x/jobs/{guid}")
async def get_job_detail(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    job = await controller_of(request).jobs.get(await caller_of(request), guid)
    return ok(present.job_detail(job, urls_of(request)))


@router.post("/v3/x/jobs/{guid}/actions/cancel")
async def cancel_job(request: Request, guid: str) -> JSONResponse:
    job = await controller_of(request).jobs.cancel(await caller_of(request), guid)
    return ok(present.job_detail(job, urls_of(request)))


@router.get("/v3/x/queues")
async def list_queues(request: Request) -> JSONResponse:
    no_query(params_of(request))
    urls = urls_of(request)
    queues = await controller_of(request).jobs.queues(await caller_of(request))
    return ok({"resources": [present.queue(item, urls) for item in queues]})


@router.get("/v3/x/queues/{name}")
async def get_queue(request: Request, name: str) -> JSONResponse:
    no_query(params_of(request))
    stats = await controller_of(request).jobs.queue(await caller_of(request), name)
    return ok(present.queue(stats, urls_of(request)))


@router.patch("/v3/x/queues/{name}")
async def update_queue(request: Request, name: str, body: UpdateQueue) -> JSONResponse:
    caller, jobs = await caller_of(request), controller_of(request).jobs
    await jobs.set_queue_concurrency(caller, name, body.concurrency)
    return ok(present.queue(await jobs.queue(caller, name), urls_of(request)))


@router.get("/v3/x/clients")
async def list_clients(request: Request) -> JSONResponse:
    no_query(params_of(request))
    urls = urls_of(request)
    clients = await controller_of(request).clients.all(await caller_of(request))
    return ok({"resources": [present.oauth_client(item, urls) for item in clients]})


@router.post("/v3/x/clients", status_code=201)
async def create_client(request: Request, body: CreateClient) -> JSONResponse:
    client = await controller_of(request).clients.create(
        await caller_of(request), body.client_id, body.client_secret, body.authorities
    )
    return ok(present.oauth_client(client, urls_of(request)), 201)


@router.delete("/v3/x/clients/{client_id}", status_code=204)
async def delete_client(request: Request, client_id: str) -> Response:
    await controller_of(request).clients.delete(await caller_of(request), client_id)
    return Response(status_code=204)
