"""Discovery (`/`, `/v3`, `/v3/info`), UAA's `/login` and the token endpoint."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from overcast import __version__
from overcast.api.deps import controller_of, ok, urls_of
from overcast.auth.service import TokenRequest
from overcast.models.errors import OAuthError

router = APIRouter()

V3_COLLECTIONS = (
    "apps",
    "audit_events",
    "buildpacks",
    "builds",
    "domains",
    "droplets",
    "organizations",
    "packages",
    "processes",
    "resource_matches",
    "roles",
    "routes",
    "spaces",
    "users",
)


@router.get("/", summary="Global root: where the APIs and the token endpoint are")
async def global_root(request: Request) -> JSONResponse:
    urls = urls_of(request)
    return ok(
        {
            "links": {
                "self": urls.link("/"),
                "cloud_controller_v3": {"href": urls.href("/v3"), "meta": {"version": "3.180.0"}},
                "login": urls.link(""),
                "uaa": urls.link(""),
                "overcast": {"href": urls.href("/v3/x"), "meta": {"version": __version__}},
            }
        }
    )


@router.get("/v3", summary="V3 root: links to every resource collection")
async def v3_root(request: Request) -> JSONResponse:
    urls = urls_of(request)
    links = {"self": urls.link("/v3"), "info": urls.link("/v3/info")}
    links.update({name: urls.link(f"/v3/{name}") for name in V3_COLLECTIONS})
    return ok({"links": links})


@router.get("/v3/info", summary="Platform information")
async def info(request: Request) -> JSONResponse:
    urls = urls_of(request)
    return ok(
        {
            "build": __version__,
            "cli_version": {"minimum": None, "recommended": None},
            "custom": {},
            "description": "Overcast: an open platform-as-a-service",
            "name": "overcast",
            "version": 1,
            "links": {"self": urls.link("/v3/info")},
        }
    )


@router.get("/login", summary="UAA-style login info (for cf-style clients)")
async def login_info(request: Request) -> JSONResponse:
    urls = urls_of(request)
    return ok(
        {
            "app": {"version": __version__},
            "links": {"uaa": urls.href(""), "login": urls.href("")},
            "prompts": {"username": ["text", "Username"], "password": ["password", "Password"]},
            "zone_name": "uaa",
        }
    )


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "Malformed client credentials", 401) from None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)


def _form_value(form: Any, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


@router.post(
    "/oauth/token",
    summary="UAA token endpoint (password, refresh_token, client_credentials grants)",
)
async def token(request: Request) -> JSONResponse:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError(
            "invalid_request", "The token endpoint takes application/x-www-form-urlencoded", 400
        )
    form = await request.form()
    basic = _basic_credentials(request.headers.get("authorization"))
    client_id, client_secret = basic or (
        _form_value(form, "client_id"),
        _form_value(form, "client_secret"),
    )
    token_request = TokenRequest(
        grant_type=_form_value(form, "grant_type"),
        client_id=client_id,
        client_secret=client_secret,
        username=_form_value(form, "username"),
        password=_form_value(form, "password"),
        refresh_token=_form_value(form, "refresh_token"),
    )
    body = await controller_of(request).auth.token(token_request)
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
