"""The blobstore: droplet tarballs (and uploads on their way to becoming one).

`BlobStore` is the interface; `DirectoryBlobStore` keeps each blob as a file,
`<dir>/<kind>/<key><suffix>` (droplets: `<dir>/droplets/<guid>.tgz`). A blob is written to a
temporary file in `<dir>/tmp` and renamed into place, so a reader never sees a partial blob.
Every controller of a cluster must see the same directory (a shared volume); an object-store
backend can implement the same protocol later.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from overcast.models.errors import RequestTooLarge, Unprocessable

DROPLETS = "droplets"
UPLOADS = "uploads"
_SUFFIXES = {DROPLETS: ".tgz", UPLOADS: ".upload"}
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
# Chunks from the network are small; write to disk in bigger blocks, off the event loop.
_WRITE_BLOCK = 1024 * 1024
_READ_BLOCK = 1024 * 1024


class BlobTooLarge(RequestTooLarge):
    """A blob would exceed its size limit."""


@dataclass(frozen=True)
class BlobInfo:
    kind: str
    key: str
    size: int
    sha256: str


class BlobStore(Protocol):
    async def write(
        self, kind: str, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> BlobInfo:
        """Store the stream as blob (kind, key), replacing any blob there, all or nothing;
        BlobTooLarge (nothing stored) once more than `max_bytes` arrive."""
        ...

    async def move(self, kind: str, key: str, new_kind: str, new_key: str) -> None:
        """Rename a blob (replacing the target); NotFound-free: a missing source raises
        FileNotFoundError."""
        ...

    async def open(self, kind: str, key: str) -> BinaryIO | None:
        """A readable, seekable file of the blob (the caller closes it), None when absent."""
        ...

    async def size(self, kind: str, key: str) -> int | None: ...

    async def sha256(self, kind: str, key: str) -> str | None: ...

    async def delete(self, kind: str, key: str) -> bool:
        """True when a blob was removed."""
        ...

    async def keys(self, kind: str) -> list[str]: ...

    def local_path(self, kind: str, key: str) -> Path | None:
        """Where the blob lives on this machine's disk, for backends that have one (lets the
        API hand the file to the web server); None otherwise."""
        ...


def _check(kind: str, key: str) -> None:
    if kind not in _SUFFIXES:
        raise ValueError(f"unknown blob kind {kind!r}")
    if not _KEY.match(key):
        raise Unprocessable("Invalid blob key")


class DirectoryBlobStore:
    def __init__(self, root: Path, *, max_blob_bytes: int = 8 * 1024**3) -> None:
        self.root = root
        self.max_blob_bytes = max_blob_bytes
        self._tmp = root / "tmp"
        for directory in (self._tmp, *(root / kind for kind in _SUFFIXES)):
            directory.mkdir(parents=True, exist_ok=True)

    def _path(self, kind: str, key: str) -> Path:
        _check(kind, key)
        return self.root / kind / f"{key}{_SUFFIXES[kind]}"

    def local_path(self, kind: str, key: str) -> Path | None:
        path = self._path(kind, key)
        return path if path.is_file() else None

    async def write(
        self, kind: str, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int
    ) -> BlobInfo:
        target = self._path(kind, key)
        limit = min(max_bytes, self.max_blob_bytes)
        temporary = self._tmp / f"{key}.{secrets.token_hex(8)}.part"
        handle = await asyncio.to_thread(open, temporary, "xb")
        digest = hashlib.sha256()
        size = 0
        pending: list[bytes] = []
        pending_size = 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > limit:
                    raise BlobTooLarge(f"The {kind[:-1]} is larger than {limit} bytes")
                digest.update(chunk)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _WRITE_BLOCK:
                    await asyncio.to_thread(handle.write, b"".join(pending))
                    pending, pending_size = [], 0
            if pending:
                await asyncio.to_thread(handle.write, b"".join(pending))
            await asyncio.to_thread(_flush_and_sync, handle)
            handle.close()
            await asyncio.to_thread(os.replace, temporary, target)
        except BaseException:
            handle.close()
            temporary.unlink(missing_ok=True)
            raise
        return BlobInfo(kind=kind, key=key, size=size, sha256=digest.hexdigest())

    async def move(self, kind: str, key: str, new_kind: str, new_key: str) -> None:
        await asyncio.to_thread(os.replace, self._path(kind, key), self._path(new_kind, new_key))

    async def open(self, kind: str, key: str) -> BinaryIO | None:
        path = self._path(kind, key)
        try:
            return await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            return None

    async def size(self, kind: str, key: str) -> int | None:
        path = self._path(kind, key)
        try:
            return (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            return None

    async def sha256(self, kind: str, key: str) -> str | None:
        handle = await self.open(kind, key)
        if handle is None:
            return None
        with handle:
            return await asyncio.to_thread(_file_sha256, handle)

    async def delete(self, kind: str, key: str) -> bool:
        path = self._path(kind, key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True

    async def keys(self, kind: str) -> list[str]:
        _check(kind, "probe")
        suffix = _SUFFIXES[kind]

        def scan() -> list[str]:
            return sorted(
                entry.name[: -len(suffix)]
                for entry in os.scandir(self.root / kind)
                if entry.is_file() and entry.name.endswith(suffix)
            )

        return await asyncio.to_thread(scan)


def _flush_and_sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _file_sha256(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    while block := handle.read(_READ_BLOCK):
        digest.update(block)
    return digest.hexdigest()
