"""The one place where errors become HTTP: every domain error class maps to a CF status, code
and title; everything the API answers with on failure is `{"errors": [{code, title, detail}]}`
(the token endpoint answers in OAuth2's `{error, error_description}` instead)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from overcast.core.logging import get_logger
from overcast.models import errors as e
from overcast.models.jobs import JobError

log = get_logger(__name__)


@dataclass(frozen=True)
class CfError:
    status: int
    code: int
    title: str


UNKNOWN = CfError(500, 10001, "UnknownError")

# Most specific class first: lookup walks each error's MRO.
_CF_ERRORS: dict[type[e.OvercastError], CfError] = {
    e.NotFound: CfError(404, 10010, "CF-ResourceNotFound"),
    e.UnknownEndpoint: CfError(404, 10000, "CF-NotFound"),
    e.Uniqueness: CfError(422, 10016, "CF-UniquenessError"),
    e.IllegalTransition: CfError(422, 10008, "CF-UnprocessableEntity"),
    e.RouteHostTaken: CfError(422, 210003, "CF-RouteHostTaken"),
    e.AssociationNotEmpty: CfError(422, 10006, "CF-AssociationNotEmpty"),
    e.Unprocessable: CfError(422, 10008, "CF-UnprocessableEntity"),
    e.MessageParseError: CfError(400, 1001, "CF-MessageParseError"),
    e.InvalidRequest: CfError(400, 10004, "CF-InvalidRequest"),
    e.BadQueryParameter: CfError(400, 10005, "CF-BadQueryParameter"),
    e.NotAuthenticated: CfError(401, 10002, "CF-NotAuthenticated"),
    e.InvalidAuthToken: CfError(401, 1000, "CF-InvalidAuthToken"),
    e.NotAuthorized: CfError(403, 10003, "CF-NotAuthorized"),
    e.RequestTooLarge: CfError(413, 10004, "CF-RequestEntityTooLarge"),
    e.ServiceUnavailable: CfError(503, 10015, "CF-ServiceUnavailable"),
}

_BY_NAME = {cls.__name__: cls for cls in _CF_ERRORS}


def cf_error_of(error_class: type[BaseException]) -> CfError:
    for cls in error_class.__mro__:
        found = _CF_ERRORS.get(cls)
        if found is not None:
            return found
    return UNKNOWN


def error_body(cf: CfError, detail: str) -> dict[str, Any]:
    return {"errors": [{"code": cf.code, "title": cf.title, "detail": detail}]}


def error_response(error: e.OvercastError) -> JSONResponse:
    cf = cf_error_of(type(error))
    headers = {"WWW-Authenticate": "Bearer"} if cf.status == 401 else None
    return JSONResponse(error_body(cf, error.detail), status_code=cf.status, headers=headers)


def job_error_json(error: JobError) -> dict[str, Any]:
    """A failed job's error in CF's shape (jobs store the domain error's class name)."""
    cf = cf_error_of(_BY_NAME.get(error.kind, e.OvercastError))
    return {"code": cf.code, "title": cf.title, "detail": error.detail}


def _location(loc: Sequence[int | str]) -> str:
    parts = [str(part) for part in loc if part not in ("body", "query")]
    return ".".join(parts) or "body"


def _validation_detail(errors: Sequence[Any]) -> tuple[bool, str]:
    """(is_parse_error, detail) from pydantic's error list."""
    unknown = [_location(err["loc"]) for err in errors if err["type"] == "extra_forbidden"]
    if any(err["type"] in ("json_invalid", "json_type") for err in errors):
        return True, "Request invalid due to parse error: invalid request body"
    messages = []
    if unknown:
        messages.append("Unknown field(s): " + ", ".join(f"'{name}'" for name in unknown))
    for err in errors:
        if err["type"] == "extra_forbidden":
            continue
        where = _location(err["loc"])
        if err["type"] == "missing":
            messages.append(f"{where} is required")
        elif (
            err["type"] in ("model_type", "dict_type", "model_attributes_type") and where == "body"
        ):
            messages.append("The request body must be a JSON object")
        else:
            messages.append(f"{where}: {err['msg']}")
    return False, "; ".join(messages) or "Invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(e.OAuthError)
    async def _oauth(_request: Request, error: e.OAuthError) -> JSONResponse:
        return JSONResponse(
            {"error": error.error, "error_description": error.detail},
            status_code=error.status,
            headers={"Cache-Control": "no-store"},
        )

    @app.exception_handler(e.OvercastError)
    async def _domain(_request: Request, error: e.OvercastError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> JSONResponse:
        parse_error, detail = _validation_detail(error.errors())
        if parse_error:
            return error_response(e.MessageParseError(detail))
        return error_response(e.Unprocessable(detail))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code in (404, 405):
            return error_response(e.UnknownEndpoint("Unknown request"))
        if error.status_code == 413:
            return error_response(e.RequestTooLarge(str(error.detail)))
        if error.status_code == 400:
            return error_response(e.InvalidRequest(str(error.detail)))
        cf = CfError(error.status_code, 10001, "UnknownError")
        return JSONResponse(error_body(cf, str(error.detail)), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, error: Exception) -> JSONResponse:
        # The text of an unexpected exception may hold anything; it goes to the log only.
        log.error("api.unhandled_error", error_type=type(error).__name__, exc_info=error)
        return JSONResponse(error_body(UNKNOWN, "An unknown error occurred."), status_code=500)
