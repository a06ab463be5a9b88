"""What every route needs from the request: the controller, link builder, caller, params."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from overcast.api.presenters import Urls
from overcast.controller.access import Caller
from overcast.controller.controller import Controller
from overcast.models.errors import NotAuthorized
from overcast.models.jobs import Job


def controller_of(request: Request) -> Controller:
    controller: Controller = request.app.state.controller
    return controller


def urls_of(request: Request) -> Urls:
    configured: str = request.app.state.external_url
    if configured:
        return Urls(configured)
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return Urls(f"{request.url.scheme}://{host}")


async def caller_of(request: Request) -> Caller:
    return await controller_of(request).caller(request.headers.get("authorization"))


def params_of(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


def param_pairs(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def ok(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def accepted_job(job: Job, urls: Urls) -> Response:
    """202 with an empty body and `Location` to the job (the only place Location is sent)."""
    return Response(status_code=202, headers={"Location": urls.href(f"/v3/jobs/{job.guid}")})


def signature_of(request: Request) -> tuple[str | None, str | None]:
    """(expires, signature) of a signed URL; any other query parameter, or either given twice,
    makes it invalid (a CF-shaped 403)."""
    params = params_of(request)
    if set(params) - {"expires", "signature"}:
        raise NotAuthorized("Invalid or expired signature")
    found: list[str | None] = []
    for name in ("expires", "signature"):
        values = params.get(name) or []
        if len(values) > 1:
            raise NotAuthorized("Invalid or expired signature")
        found.append(values[0] if values else None)
    return found[0], found[1]
