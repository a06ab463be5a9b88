"""The blobstore: droplet tarballs, package manifests (and uploads on their way to becoming
one), and the files of packages, content-addressed by sha1.

`BlobStore` is the interface; `DirectoryBlobStore` keeps each blob as a file,
`<dir>/<kind>/<key><suffix>` (droplets: `<dir>/droplets/<guid>.tgz`; packages:
`<dir>/packages/<guid>.json`; package uploads: `<dir>/package_uploads/<key>.zip`), and each
package file as `<dir>/files/<sha1[:2]>/<sha1>`. A blob or file is written to a temporary
file in `<dir>/tmp` and renamed into place, so a reader never sees a partial one. A file's
modification time says when it was last stored or asked for: the packages' sweep keeps files
no package refers to for a grace period after that.
Every controller of a cluster must see the same directory (a shared volume); an object-store
backend can implement the same protocol later.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from overcast.models.errors import RequestTooLarge, Unprocessable

DROPLETS = "droplets"
UPLOADS = "uploads"
PACKAGES = "packages"
PACKAGE_UPLOADS = "package_uploads"
_SUFFIXES = {DROPLETS: ".tgz", UPLOADS: ".upload", PACKAGES: ".json", PACKAGE_UPLOADS: ".zip"}
FILES = "files"
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")
# Chunks from the network are small; write to disk in bigger blocks, off the event loop.
_WRITE_BLOCK = 1024 * 1024
_READ_BLOCK = 1024 * 1024


class BlobTooLarge(RequestTooLarge):
    """A blob would exceed its size limit."""


@dataclass(frozen=True)
class FileInfo:
    """A file of the content-addressed file store."""

    sha1: str
    size: int


@dataclass(frozen=True)
class StoredFile:
    """A file of the file store, and when it was last stored or touched."""

    sha1: str
    size: int
    modified: datetime


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

    # --- content-addressed files (package contents, shared by every package) ---------------

    async def add_file(self, source: IO[bytes], *, max_bytes: int) -> FileInfo:
        """Copy `source` (read to its end, off the event loop) into the file store under its
        sha1; a file of that sha1 already there is kept (and touched). BlobTooLarge (nothing
        stored) once more than `max_bytes` are read."""
        ...

    async def file_sizes(self, sha1s: Iterable[str], *, touch: bool = False) -> dict[str, int]:
        """The size of each of these files the store holds (absent ones are left out; a
        malformed sha1 is simply not held). With `touch`, each held file counts as modified
        now."""
        ...

    async def open_file(self, sha1: str) -> BinaryIO | None:
        """A readable file of the stored file (the caller closes it), None when absent."""
        ...

    async def stored_files(self) -> list[StoredFile]:
        """Every file of the file store, with when it was last stored or touched."""
        ...

    async def delete_file(self, sha1: str, *, modified_before: datetime | None = None) -> bool:
        """Remove the file; with `modified_before`, only if it was last stored or touched
        before then (checked after the file is out of reach, so that a file touched meanwhile
        is kept). True when a file was removed."""
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
        self._files = root / FILES
        for directory in (self._tmp, self._files, *(root / kind for kind in _SUFFIXES)):
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

    # --- content-addressed files ------------------------------------------------------------

    def _file_path(self, sha1: str) -> Path:
        if not _SHA1.match(sha1):
            raise Unprocessable("Invalid file checksum")
        return self._files / sha1[:2] / sha1

    async def add_file(self, source: IO[bytes], *, max_bytes: int) -> FileInfo:
        limit = min(max_bytes, self.max_blob_bytes)
        return await asyncio.to_thread(self._add_file, source, limit)

    def _add_file(self, source: IO[bytes], limit: int) -> FileInfo:
        temporary = self._tmp / f"file.{secrets.token_hex(8)}.part"
        digest = hashlib.sha1(usedforsecurity=False)
        size = 0
        try:
            with open(temporary, "xb") as handle:
                while block := source.read(_READ_BLOCK):
                    size += len(block)
                    if size > limit:
                        raise BlobTooLarge(f"The file is larger than {limit} bytes")
                    digest.update(block)
                    handle.write(block)
                _flush_and_sync(handle)
            sha1 = digest.hexdigest()
            target = self._file_path(sha1)
            if _touch(target, size):
                temporary.unlink()
            else:
                target.parent.mkdir(exist_ok=True)
                os.replace(temporary, target)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        return FileInfo(sha1=sha1, size=size)

    async def file_sizes(self, sha1s: Iterable[str], *, touch: bool = False) -> dict[str, int]:
        wanted = sorted({sha1 for sha1 in sha1s if _SHA1.match(sha1)})

        def scan() -> dict[str, int]:
            found: dict[str, int] = {}
            for sha1 in wanted:
                path = self._file_path(sha1)
                try:
                    if touch:
                        # First: a file the sweep has taken away is not reported held.
                        os.utime(path)
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                found[sha1] = stat.st_size
            return found

        return await asyncio.to_thread(scan)

    async def open_file(self, sha1: str) -> BinaryIO | None:
        path = self._file_path(sha1)
        try:
            return await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            return None

    async def stored_files(self) -> list[StoredFile]:
        def scan() -> list[StoredFile]:
            found: list[StoredFile] = []
            for directory in os.scandir(self._files):
                if not directory.is_dir(follow_symlinks=False):
                    continue
                for entry in os.scandir(directory.path):
                    if not _SHA1.match(entry.name) or not entry.name.startswith(directory.name):
                        continue
                    try:
                        stat = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # deleted meanwhile
                        continue
                    modified = datetime.fromtimestamp(stat.st_mtime, UTC)
                    found.append(StoredFile(sha1=entry.name, size=stat.st_size, modified=modified))
            return sorted(found, key=lambda file: file.sha1)

        return await asyncio.to_thread(scan)

    async def delete_file(self, sha1: str, *, modified_before: datetime | None = None) -> bool:
        path = self._file_path(sha1)
        if modified_before is None:
            try:
                await asyncio.to_thread(path.unlink)
            except FileNotFoundError:
                return False
            return True
        return await asyncio.to_thread(self._delete_old_file, path, modified_before.timestamp())

    def _delete_old_file(self, path: Path, before: float) -> bool:
        # Moved out of reach first: from then on, add_file stores the file anew and
        # file_sizes(touch=True) does not report it, so a touch the check below misses
        # cannot happen.
        doomed = self._tmp / f"{path.name}.{secrets.token_hex(8)}.doomed"
        try:
            os.rename(path, doomed)
        except FileNotFoundError:
            return False
        if doomed.stat().st_mtime >= before:
            # Touched before it was moved: put back (over a copy stored meanwhile, which has
            # the same content).
            os.replace(doomed, path)
            return False
        doomed.unlink()
        return True


def _touch(path: Path, size: int) -> bool:
    """Whether the file store holds `path` with this size; if so it counts as modified now."""
    try:
        if path.stat().st_size != size:
            return False
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _flush_and_sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _file_sha256(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    while block := handle.read(_READ_BLOCK):
        digest.update(block)
    return digest.hexdigest()
