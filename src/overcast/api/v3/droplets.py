"""/v3/droplets, their upload and download, and an app's droplets and current droplet."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

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
from overcast.api.schemas import CreateDroplet, CurrentDroplet, UpdateDroplet
from overcast.models.errors import Unprocessable

router = APIRouter(tags=["droplets"])

# The route whose body may be as large as a droplet (the middleware's per-route limit).
UPLOAD_PATH = r"^/v3/droplets/[^/]+/upload$"
FILTERS = ("guids", "app_guids", "states", "space_guids", "organization_guids")
BITS = b"bits"
_MAX_PART_HEADERS = 16
_MAX_PART_HEADER_BYTES = 8 * 1024


def _boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise Unprocessable(
            "The upload must be multipart/form-data with the droplet in the field 'bits'"
        )
    return boundary


class _Parts:
    """The callbacks of python-multipart's streaming parser: the data of the `bits` part is
    collected chunk by chunk; any other field is refused."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.found_bits = False
        self.in_bits = False
        self.ended = False
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""

    def on_part_begin(self) -> None:
        self._headers = {}
        self.in_bits = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field = self._value = b""

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name")
        if disposition != b"form-data" or name is None:
            raise Unprocessable("Every part of the upload must be a named form-data field")
        if name != BITS:
            field = name.decode("latin-1")[:64]
            raise Unprocessable(f"Unknown field(s): '{field}' (a droplet upload takes 'bits')")
        if self.found_bits:
            raise Unprocessable("The field 'bits' was given more than once")
        self.found_bits = self.in_bits = True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_bits:
            self.pending.append(data[start:end])

    def on_part_end(self) -> None:
        self.in_bits = False

    def on_end(self) -> None:
        self.ended = True


async def _bits(request: Request, boundary: bytes) -> AsyncIterator[bytes]:
    """The bytes of the `bits` file, streamed out of the multipart body as it arrives (never
    the whole body in memory)."""
    parts = _Parts()
    try:
        parser = MultipartParser(
            boundary,
            callbacks={
                "on_part_begin": parts.on_part_begin,
                "on_part_data": parts.on_part_data,
                "on_part_end": parts.on_part_end,
                "on_header_field": parts.on_header_field,
                "on_header_value": parts.on_header_value,
                "on_header_end": parts.on_header_end,
                "on_headers_finished": parts.on_headers_finished,
                "on_end": parts.on_end,
            },
            max_header_count=_MAX_PART_HEADERS,
            max_header_size=_MAX_PART_HEADER_BYTES,
        )
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
            if parts.pending:
                data = b"".join(parts.pending)
                parts.pending.clear()
                yield data
        parser.finalize()
    except FormParserError:
        raise Unprocessable("The upload is not valid multipart/form-data") from None
    if not parts.ended:
        raise Unprocessable("The multipart body ended before its closing boundary")
    if not parts.found_bits:
        raise Unprocessable("The upload must include the droplet in the field 'bits'")


@router.post("/v3/droplets", status_code=201)
async def create_droplet(request: Request, body: CreateDroplet) -> JSONResponse:
    no_query(params_of(request))
    meta = body.metadata
    droplet = await controller_of(request).droplets.create(
        await caller_of(request),
        body.relationships.app.data.guid,
        process_types=body.process_types,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.droplet(droplet, urls_of(request)), 201)


@router.get("/v3/droplets")
async def list_droplets(request: Request) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=FILTERS)
    page = await controller_of(request).droplets.page(caller, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/droplets",
            lambda item: present.droplet(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/droplets/{guid}")
async def get_droplet(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    droplet = await controller_of(request).droplets.get(await caller_of(request), guid)
    return ok(present.droplet(droplet, urls_of(request)))


@router.patch("/v3/droplets/{guid}")
async def update_droplet(request: Request, guid: str, body: UpdateDroplet) -> JSONResponse:
    no_query(params_of(request))
    meta = body.metadata
    droplet = await controller_of(request).droplets.update(
        await caller_of(request),
        guid,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.droplet(droplet, urls_of(request)))


@router.delete("/v3/droplets/{guid}", status_code=202)
async def delete_droplet(request: Request, guid: str) -> Response:
    no_query(params_of(request))
    job = await controller_of(request).droplets.delete(await caller_of(request), guid)
    return accepted_job(job, urls_of(request))


@router.post("/v3/droplets/{guid}/upload", status_code=202)
async def upload_droplet(request: Request, guid: str) -> JSONResponse:
    """Multipart field `bits`: the droplet tarball, streamed to the blobstore; a job checks
    it (202 with the droplet, PROCESSING_UPLOAD, and `Location` to the job)."""
    no_query(params_of(request))
    caller, urls = await caller_of(request), urls_of(request)
    boundary = _boundary(request.headers.get("content-type"))
    droplet, job = await controller_of(request).droplets.upload(
        caller, guid, _bits(request, boundary)
    )
    return JSONResponse(
        present.droplet(droplet, urls),
        status_code=202,
        headers={"Location": urls.href(f"/v3/jobs/{job.guid}")},
    )


@router.get("/v3/droplets/{guid}/download")
async def download_droplet(request: Request, guid: str) -> Response:
    """A space developer is redirected to a short-lived signed URL of the bits."""
    no_query(params_of(request))
    url = await controller_of(request).droplets.user_download_url(await caller_of(request), guid)
    return RedirectResponse(url, status_code=302)


@router.get("/v3/apps/{guid}/droplets")
async def app_droplets(request: Request, guid: str) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=("guids", "states"))
    page = await controller_of(request).droplets.of_app(caller, guid, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            f"/v3/apps/{guid}/droplets",
            lambda item: present.droplet(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/packages/{guid}/droplets")
async def package_droplets(request: Request, guid: str) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=("guids", "states"))
    page = await controller_of(request).droplets.of_package(caller, guid, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            f"/v3/packages/{guid}/droplets",
            lambda item: present.droplet(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/apps/{guid}/droplets/current")
async def app_current_droplet(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    droplet = await controller_of(request).droplets.current(await caller_of(request), guid)
    return ok(present.droplet(droplet, urls_of(request)))


@router.get("/v3/apps/{guid}/relationships/current_droplet")
async def get_current_droplet_relationship(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    app, droplet_guid = await controller_of(request).droplets.current_guid(
        await caller_of(request), guid
    )
    return ok(present.current_droplet_relationship(app.guid, droplet_guid, urls_of(request)))


@router.patch("/v3/apps/{guid}/relationships/current_droplet")
async def set_current_droplet(request: Request, guid: str, body: CurrentDroplet) -> JSONResponse:
    no_query(params_of(request))
    app = await controller_of(request).droplets.set_current(
        await caller_of(request), guid, body.data.guid
    )
    return ok(
        present.current_droplet_relationship(app.guid, app.current_droplet_guid, urls_of(request))
    )
