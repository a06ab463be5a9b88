"""Droplet downloads: verified, cached by checksum, fetched once, the signed URL kept quiet."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest

from overcast.bus.messages import Checksum, DropletSource
from overcast.cell.droplets import DropletCache
from overcast.cell.runtime import PrepareError

BODY = b"droplet bytes" * 1000
SHA = hashlib.sha256(BODY).hexdigest()
URL = "http://blobs.test/droplets/d-1?signature=very-secret"


def cache(tmp_path: Path, status: int = 200) -> tuple[DropletCache, list[str]]:
    calls: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        await asyncio.sleep(0.01)
        return httpx.Response(status, content=BODY)

    return DropletCache(tmp_path / "droplets", transport=httpx.MockTransport(handler)), calls


def source(checksum: str = SHA) -> DropletSource:
    return DropletSource(guid="d-1", url=URL, checksum=Checksum(value=checksum))


async def test_concurrent_fetches_download_once(tmp_path: Path) -> None:
    droplets, calls = cache(tmp_path)
    paths = await asyncio.gather(*(droplets.fetch(source()) for _ in range(3)))
    assert len(set(paths)) == 1 and paths[0].read_bytes() == BODY
    assert len(calls) == 1
    await droplets.fetch(source())
    assert len(calls) == 1


async def test_checksum_mismatch(tmp_path: Path) -> None:
    droplets, _ = cache(tmp_path)
    with pytest.raises(PrepareError, match="checksum mismatch") as raised:
        await droplets.fetch(source("1" * 64))
    assert "very-secret" not in str(raised.value)
    assert list((tmp_path / "droplets").iterdir()) == []


async def test_http_error(tmp_path: Path) -> None:
    droplets, _ = cache(tmp_path, status=403)
    with pytest.raises(PrepareError, match="HTTP 403") as raised:
        await droplets.fetch(source())
    assert "very-secret" not in str(raised.value)


async def test_connection_error_does_not_name_the_url(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}")

    droplets = DropletCache(tmp_path, transport=httpx.MockTransport(refuse))
    with pytest.raises(PrepareError, match="ConnectError") as raised:
        await droplets.fetch(source())
    assert "very-secret" not in str(raised.value)
