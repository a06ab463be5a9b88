"""Droplet downloads, cached per cell by checksum.

The URL is signed (it carries a secret), so it is never logged nor put in an error."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from overcast.bus.messages import DropletSource
from overcast.cell.runtime import PrepareError
from overcast.core.logging import get_logger

log = get_logger(__name__)

CHUNK_BYTES = 256 * 1024
# Droplets kept for the next start of the same release (most recently used first).
DEFAULT_KEEP = 16
CONNECT_TIMEOUT_SECONDS = 10.0


class DropletCache:
    """`<directory>/<sha256>.tgz`, written only after its checksum was verified. Concurrent
    fetches of one droplet download it once."""

    def __init__(
        self,
        directory: Path,
        *,
        timeout: float = 60.0,
        keep: int = DEFAULT_KEEP,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.directory = directory
        self._timeout = timeout
        self._keep = keep
        self._transport = transport
        self._locks: dict[str, asyncio.Lock] = {}
        self.downloads = 0

    def path_of(self, checksum: str) -> Path:
        return self.directory / f"{checksum}.tgz"

    async def fetch(self, source: DropletSource) -> Path:
        checksum = source.checksum.value
        path = self.path_of(checksum)
        lock = self._locks.setdefault(checksum, asyncio.Lock())
        async with lock:
            if path.exists():
                with contextlib.suppress(OSError):
                    os.utime(path)  # most recently used
                return path
            await self._download(source, path)
            self.downloads += 1
        await asyncio.to_thread(self._prune, path)
        return path

    async def _download(self, source: DropletSource, path: Path) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, suffix=".part")
        digest = hashlib.sha256()
        try:
            with os.fdopen(descriptor, "wb") as handle:

                def sink(chunk: bytes) -> None:
                    digest.update(chunk)
                    handle.write(chunk)

                await self._stream_into(source, sink)
                handle.flush()
                os.fsync(handle.fileno())
            actual = digest.hexdigest()
            if actual != source.checksum.value:
                raise PrepareError(
                    f"droplet {source.guid} checksum mismatch: expected sha256 "
                    f"{source.checksum.value}, got {actual}"
                )
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)

    async def _stream_into(self, source: DropletSource, sink: Callable[[bytes], None]) -> None:
        try:
            # No proxies or certificates from the environment: settings only.
            async with (
                httpx.AsyncClient(
                    timeout=httpx.Timeout(self._timeout, connect=CONNECT_TIMEOUT_SECONDS),
                    trust_env=False,
                    transport=self._transport,
                ) as client,
                client.stream("GET", source.url) as response,
            ):
                if response.status_code != 200:
                    raise PrepareError(
                        f"droplet {source.guid} download failed: HTTP {response.status_code}"
                    )
                async for chunk in response.aiter_bytes(CHUNK_BYTES):
                    sink(chunk)
        except httpx.HTTPError as error:
            # The exception text would name the signed URL: keep only its kind.
            raise PrepareError(
                f"droplet {source.guid} download failed: {type(error).__name__}"
            ) from None

    def _prune(self, keep_path: Path) -> None:
        cached = sorted(
            self.directory.glob("*.tgz"),
            key=lambda p: p.stat().st_mtime if p.exists() else 0.0,
            reverse=True,
        )
        for old in cached[self._keep :]:
            if old != keep_path:
                with contextlib.suppress(OSError):
                    old.unlink()
