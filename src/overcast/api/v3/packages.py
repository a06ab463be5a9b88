"""/v3/packages, their upload and download, an app's packages, /v3/resource_matches, and the
signed package download for staging (`/v3/x/blobs/packages/:guid`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.background import BackgroundTask

from overcast.api import presenters as present
from overcast.api.deps import (
    accepted_job,
    caller_of,
    controller_of,
    ok,
    param_pairs,
    params_of,
    signature_of,
    urls_of,
)
from overcast.api.params import no_query, parse_list
from overcast.api.schemas import CreatePackage, ResourceMatches, UpdatePackage
from overcast.models.errors import RequestTooLarge, Unprocessable

router = APIRouter(tags=["packages"])

# The route whose body may be as large as a package (the middleware's per-route limit).
UPLOAD_PATH = r"^/v3/packages/[^/]+/upload$"
FILTERS = ("guids", "app_guids", "states", "types", "space_guids", "organization_guids")
BITS = b"bits"
RESOURCES = b"resources"
# POST /v3/resource_matches: up to the resource cap of entries (past the general body limit).
MATCHES_PATH = r"^/v3/resource_matches$"
MAX_MATCHES_BODY_BYTES = 8 * 1024 * 1024
# The `resources` field: at most the resource cap of entries of a few hundred bytes each.
MAX_RESOURCES_BYTES = 8 * 1024 * 1024
_MAX_PART_HEADERS = 16
_MAX_PART_HEADER_BYTES = 8 * 1024


def _boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise Unprocessable(
            "The upload must be multipart/form-data with the fields 'bits' and/or 'resources'"
        )
    return boundary


class _Form:
    """The callbacks of python-multipart's streaming parser: the data of `bits` is handed
    on chunk by chunk, `resources` is collected (bounded); any other field is refused."""

    def __init__(self, request: Request, boundary: bytes) -> None:
        self.request = request
        self.boundary = boundary
        self.pending: list[bytes] = []
        self.found_bits = False
        self.ended = False
        self._resources: bytearray | None = None
        self._current = b""
        self._seen: set[bytes] = set()
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""

    # -- the UploadForm protocol of overcast.controller.packages --

    @property
    def has_bits(self) -> bool:
        return self.found_bits

    @property
    def resources(self) -> bytes | None:
        return bytes(self._resources) if self._resources is not None else None

    async def bits(self) -> AsyncIterator[bytes]:
        """The bytes of the `bits` file, streamed out of the multipart body as it arrives
        (never the whole body in memory)."""
        try:
            parser = MultipartParser(
                self.boundary,
                callbacks={
                    "on_part_begin": self.on_part_begin,
                    "on_part_data": self.on_part_data,
                    "on_part_end": self.on_part_end,
                    "on_header_field": self.on_header_field,
                    "on_header_value": self.on_header_value,
                    "on_header_end": self.on_header_end,
                    "on_headers_finished": self.on_headers_finished,
                    "on_end": self.on_end,
                },
                max_header_count=_MAX_PART_HEADERS,
                max_header_size=_MAX_PART_HEADER_BYTES,
            )
            async for chunk in self.request.stream():
                if chunk:
                    parser.write(chunk)
                if self.pending:
                    data = b"".join(self.pending)
                    self.pending.clear()
                    yield data
            parser.finalize()
        except FormParserError:
            raise Unprocessable("The upload is not valid multipart/form-data") from None
        if not self.ended:
            raise Unprocessable("The multipart body ended before its closing boundary")

    # -- parser callbacks --

    def on_part_begin(self) -> None:
        self._headers = {}
        self._current = b""

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
        if name not in (BITS, RESOURCES):
            field = name.decode("latin-1")[:64]
            raise Unprocessable(
                f"Unknown field(s): '{field}' (a package upload takes 'bits' and 'resources')"
            )
        if name in self._seen:
            raise Unprocessable(f"The field '{name.decode()}' was given more than once")
        self._seen.add(name)
        self._current = name
        if name == BITS:
            self.found_bits = True
        else:
            self._resources = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current == BITS:
            self.pending.append(data[start:end])
        elif self._current == RESOURCES and self._resources is not None:
            self._resources += data[start:end]
            if len(self._resources) > MAX_RESOURCES_BYTES:
                raise RequestTooLarge(
                    f"The field 'resources' is larger than {MAX_RESOURCES_BYTES} bytes"
                )

    def on_part_end(self) -> None:
        self._current = b""

    def on_end(self) -> None:
        self.ended = True


@router.post("/v3/packages", status_code=201)
async def create_package(request: Request, body: CreatePackage) -> JSONResponse:
    no_query(params_of(request))
    meta = body.metadata
    package = await controller_of(request).packages.create(
        await caller_of(request),
        body.relationships.app.data.guid,
        package_type=body.type,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.package(package, urls_of(request)), 201)


@router.get("/v3/packages")
async def list_packages(request: Request) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=FILTERS)
    page = await controller_of(request).packages.page(caller, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            "/v3/packages",
            lambda item: present.package(item, urls),
            param_pairs(request),
        )
    )


@router.get("/v3/packages/{guid}")
async def get_package(request: Request, guid: str) -> JSONResponse:
    no_query(params_of(request))
    package = await controller_of(request).packages.get(await caller_of(request), guid)
    return ok(present.package(package, urls_of(request)))


@router.patch("/v3/packages/{guid}")
async def update_package(request: Request, guid: str, body: UpdatePackage) -> JSONResponse:
    no_query(params_of(request))
    meta = body.metadata
    package = await controller_of(request).packages.update(
        await caller_of(request),
        guid,
        labels=meta.labels if meta else None,
        annotations=meta.annotations if meta else None,
    )
    return ok(present.package(package, urls_of(request)))


@router.delete("/v3/packages/{guid}", status_code=202)
async def delete_package(request: Request, guid: str) -> Response:
    no_query(params_of(request))
    job = await controller_of(request).packages.delete(await caller_of(request), guid)
    return accepted_job(job, urls_of(request))


@router.post("/v3/packages/{guid}/upload")
async def upload_package(request: Request, guid: str) -> JSONResponse:
    """Multipart fields `bits` (a zip, streamed to the blobstore) and/or `resources` (a JSON
    list of files the server holds). 200 with the package, PROCESSING_UPLOAD, as CF answers;
    the `package.upload` job makes it READY or FAILED."""
    no_query(params_of(request))
    caller, urls = await caller_of(request), urls_of(request)
    packages = controller_of(request).packages
    await packages.check_upload(caller, guid)
    form = _Form(request, _boundary(request.headers.get("content-type")))
    package = await packages.upload(caller, guid, form)
    return ok(present.package(package, urls))


@router.get("/v3/packages/{guid}/download")
async def download_package(request: Request, guid: str) -> Response:
    """A space developer is redirected to a short-lived signed URL of the package (a zip)."""
    no_query(params_of(request))
    url = await controller_of(request).packages.user_download_url(await caller_of(request), guid)
    return RedirectResponse(url, status_code=302)


@router.get("/v3/apps/{guid}/packages")
async def app_packages(request: Request, guid: str) -> JSONResponse:
    caller, urls = await caller_of(request), urls_of(request)
    listing = parse_list(params_of(request), filters=("guids", "states", "types"))
    page = await controller_of(request).packages.of_app(caller, guid, listing.query)
    return ok(
        present.paginated(
            page,
            listing.query,
            urls,
            f"/v3/apps/{guid}/packages",
            lambda item: present.package(item, urls),
            param_pairs(request),
        )
    )


@router.post("/v3/resource_matches", status_code=201)
async def resource_matches(request: Request, body: ResourceMatches) -> JSONResponse:
    """The entries whose file (same sha1 and size) the server already holds, as given."""
    no_query(params_of(request))
    caller = await caller_of(request)
    wanted = [(item.checksum.value, item.size_in_bytes) for item in body.resources]
    held = await controller_of(request).packages.matches(caller, wanted)
    return ok(
        {
            "resources": [
                item.model_dump(exclude_none=True)
                for item, found in zip(body.resources, held, strict=True)
                if found
            ]
        },
        201,
    )


@router.get("/v3/x/blobs/packages/{guid}", tags=["extensions"])
async def download_package_blob(request: Request, guid: str) -> Response:
    """The package as a zip, by signed URL (no token): for staging."""
    expires, signature = signature_of(request)
    package, path = await controller_of(request).packages.signed_zip(
        "GET", guid, expires, signature
    )
    headers = {"Cache-Control": "private, max-age=0, no-transform"}
    if package.checksum:
        # The manifest's checksum: it names the package's content, not the zip's bytes.
        headers["X-Package-Checksum-Sha256"] = package.checksum
    return FileResponse(
        path,
        media_type="application/zip",
        filename=f"{guid}.zip",
        headers=headers,
        background=BackgroundTask(path.unlink, missing_ok=True),
    )
