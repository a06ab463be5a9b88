"""/v3/x/blobs: droplet bits for cells, by signed URL (no bearer token; see
`overcast.controller.blob_urls`). A missing, bad or expired signature is a CF-shaped 403."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from overcast.api.deps import controller_of, signature_of
from overcast.models.errors import NotFound

router = APIRouter(tags=["extensions"])

# The droplet's sha256 (hex), so a cell can check what it fetched before using it.
CHECKSUM_HEADER = "X-Checksum-Sha256"
_CHUNK = 1024 * 1024


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while block := handle.read(_CHUNK):
            yield block


@router.get("/v3/x/blobs/droplets/{guid}")
async def download_droplet_blob(request: Request, guid: str) -> Response:
    expires, signature = signature_of(request)
    droplets = controller_of(request).droplets
    blob = await droplets.signed_blob("GET", guid, expires, signature)
    headers = {
        CHECKSUM_HEADER: blob.sha256,
        "ETag": f'"{blob.sha256}"',
        "Cache-Control": "private, max-age=0, no-transform",
    }
    filename = f"{blob.droplet_guid}.tgz"
    if blob.path is not None:
        return FileResponse(
            blob.path, media_type="application/gzip", filename=filename, headers=headers
        )
    handle = await droplets.open_blob(guid)
    if handle is None:
        raise NotFound.of("Droplet")
    if blob.size is not None:
        headers["Content-Length"] = str(blob.size)
    return StreamingResponse(_chunks(handle), media_type="application/gzip", headers=headers)
