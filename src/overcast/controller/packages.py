"""Packages: an app's source bits (CF v3 `bits` packages) and resource matching.

A package is created empty (AWAITING_UPLOAD). An upload streams the zip (`bits`) to the
blobstore and names, in `resources`, files the server already holds; the `package.upload` job
checks the zip, copies each of its files into the content-addressed file store (by sha1),
resolves the resources there, and stores the package as a manifest (path -> sha1, size, mode):
READY, or FAILED with an error naming the offending entry. The package's checksum is the
sha256 of that canonical manifest, so the same files give the same checksum however they
arrived.

Staging gets a package's files with `materialize(package_guid, dest_dir)`, or as a zip from a
signed URL (`download_url`, `GET /v3/x/blobs/packages/:guid`), like droplets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import secrets
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from overcast.controller.access import (
    Caller,
    forbid,
    restrict,
    visible_app,
    visible_of_app,
    visible_space_guids,
)
from overcast.controller.base import MetadataPatch, UseCase
from overcast.controller.events import record_app_event
from overcast.controller.package_archive import (
    InvalidPackage,
    ManifestEntry,
    PackageLimits,
    ResourceRef,
    ZipEntry,
    check_link_target,
    check_tree,
    corrupt_entry,
    manifest_bytes,
    manifest_sha256,
    parse_manifest,
    parse_resources,
    read_link,
    resources_from_params,
    resources_to_params,
    scan_zip,
)
from overcast.controller.signed_urls import SignedUrls
from overcast.core.clock import Clock
from overcast.core.ids import new_guid
from overcast.core.logging import get_logger
from overcast.jobs.engine import JobContext, JobEngine, Operation, StageSpec
from overcast.models.errors import (
    NotFound,
    Unprocessable,
)
from overcast.models.jobs import Job
from overcast.models.lifecycle import PACKAGE_TRANSITIONS, PackageState, transition
from overcast.models.metadata import patch_metadata
from overcast.models.query import ListQuery, Page
from overcast.models.resources import App, Metadata, Package, Space
from overcast.store.base import Store, Tx
from overcast.store.blobs import PACKAGE_UPLOADS, PACKAGES, BlobStore, BlobTooLarge

log = get_logger(__name__)

UPLOAD_OPERATION = "package.upload"
DELETE_OPERATION = "package.delete"
BITS = "bits"
# Deletes after which package blobs may have lost their rows (cascades from apps).
_CASCADING_DELETES = frozenset({"app.delete", "space.delete", "organization.delete"})
_COPY_BLOCK = 1024 * 1024
# A zip check supplied by the composition root (e.g. overcast.staging's): raises ValueError
# naming the entry when the archive at the path is unsafe.
ZipCheck = Callable[[Path], object]


def package_blob_path(package_guid: str) -> str:
    return f"/v3/x/blobs/packages/{package_guid}"


class UploadForm(Protocol):
    """The multipart body of an upload, as the API reads it: `bits` streamed, and once the
    stream is exhausted, whether `bits` was there and the raw `resources` field."""

    def bits(self) -> AsyncIterator[bytes]: ...

    @property
    def has_bits(self) -> bool: ...

    @property
    def resources(self) -> bytes | None: ...


def _no_access(app_guid: str) -> Unprocessable:
    return Unprocessable(
        f"App with guid '{app_guid}' does not exist, or you do not have access to it."
    )


def _only_once(state: PackageState) -> Unprocessable:
    return Unprocessable(
        f"Bits may be uploaded only once (the package is {state.value}). Create a new "
        "package to upload different bits."
    )


def _processing_upload(current: Package) -> Package:
    if current.state != PackageState.AWAITING_UPLOAD:
        raise _only_once(current.state)
    state = transition(
        PACKAGE_TRANSITIONS, current.state, PackageState.PROCESSING_UPLOAD, what="Package"
    )
    return dataclasses.replace(current, state=state)


class Packages(UseCase):
    def __init__(
        self,
        store: Store,
        clock: Clock,
        engine: JobEngine,
        *,
        blobs: BlobStore,
        max_package_bytes: int,
        limits: PackageLimits,
        max_resource_matches: int,
        signed_url_ttl_seconds: int,
        zip_check: ZipCheck | None = None,
    ) -> None:
        super().__init__(store, clock, engine)
        self.blobs = blobs
        self.max_package_bytes = max_package_bytes
        self.limits = limits
        self.max_resource_matches = max_resource_matches
        self.urls = SignedUrls(store, clock, signed_url_ttl_seconds)
        self.zip_check = zip_check
        self._background: set[asyncio.Task[int]] = set()

    def operations(self) -> list[Operation]:
        return [
            Operation(
                UPLOAD_OPERATION,
                "default",
                (StageSpec("check and store package", self._process_upload),),
            ),
            Operation(
                DELETE_OPERATION,
                "deletes",
                (StageSpec("delete package", self._delete_package),),
            ),
        ]

    @property
    def api_url(self) -> str:
        return self.urls.api_url

    @api_url.setter
    def api_url(self, url: str) -> None:
        self.urls.api_url = url.rstrip("/")

    # --- visibility -------------------------------------------------------------------------

    async def _visible(self, tx: Tx, caller: Caller, guid: str) -> tuple[Package, App, Space]:
        return await visible_of_app(tx, caller, await tx.packages.get(guid), "Package")

    async def _writable(self, tx: Tx, caller: Caller, guid: str) -> tuple[Package, App, Space]:
        package, app, space = await self._visible(tx, caller, guid)
        if not caller.permissions.can_develop_in_space(space.guid):
            raise forbid()
        return package, app, space

    # --- reads ------------------------------------------------------------------------------

    async def get(self, caller: Caller, guid: str) -> Package:
        async with self.store.read() as tx:
            package, _, _ = await self._visible(tx, caller, guid)
        return package

    async def page(self, caller: Caller, query: ListQuery) -> Page[Package]:
        async with self.store.read() as tx:
            allowed = await visible_space_guids(tx, caller)
            filters = restrict(query.filters, "space_guids", allowed)
            return await tx.packages.page(dataclasses.replace(query, filters=filters))

    async def of_app(self, caller: Caller, app_guid: str, query: ListQuery) -> Page[Package]:
        async with self.store.read() as tx:
            app, _ = await visible_app(tx, caller, app_guid)
            filters = {**query.filters, "app_guids": [app.guid]}
            return await tx.packages.page(dataclasses.replace(query, filters=filters))

    # --- changes ----------------------------------------------------------------------------

    async def create(
        self,
        caller: Caller,
        app_guid: str,
        *,
        package_type: str = BITS,
        labels: MetadataPatch = None,
        annotations: MetadataPatch = None,
    ) -> Package:
        if package_type != BITS:
            raise Unprocessable(
                f"Package type {package_type!r} is not supported: only 'bits' packages"
            )
        now = self.clock.now()
        async with self.store.write() as tx:
            try:
                app, space = await visible_app(tx, caller, app_guid)
            except NotFound:
                raise _no_access(app_guid) from None
            if not caller.permissions.can_develop_in_space(space.guid):
                raise forbid()
            package = Package(
                guid=new_guid(),
                app_guid=app.guid,
                created_at=now,
                updated_at=now,
                type=BITS,
                state=PackageState.AWAITING_UPLOAD,
                metadata=patch_metadata(Metadata(), labels, annotations),
            )
            await tx.packages.add(package)
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.package.create",
                app,
                space,
                package_guid=package.guid,
                request={"type": BITS},
            )
        return package

    async def update(
        self, caller: Caller, guid: str, *, labels: MetadataPatch, annotations: MetadataPatch
    ) -> Package:
        async with self.store.write() as tx:
            await self._writable(tx, caller, guid)
            _, after = await tx.packages.update(
                guid,
                lambda current: dataclasses.replace(
                    current, metadata=patch_metadata(current.metadata, labels, annotations)
                ),
            )
        return after

    async def delete(self, caller: Caller, guid: str) -> Job:
        async with self.store.write() as tx:
            package, app, space = await self._writable(tx, caller, guid)
            job = await self.engine.submit_in(
                tx,
                DELETE_OPERATION,
                target_type="package",
                target_guid=package.guid,
                creator=self.creator(caller),
            )
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.package.delete",
                app,
                space,
                package_guid=package.guid,
            )
        self.engine.wake()
        return job

    # --- resource matching ------------------------------------------------------------------

    async def matches(self, caller: Caller, wanted: Sequence[tuple[str, int]]) -> list[bool]:
        """For each (sha1, size): does the file store hold that file? (Any authenticated
        caller may ask, as in CF.)"""
        del caller  # authenticated by the API; nothing more to check
        if len(wanted) > self.max_resource_matches:
            raise Unprocessable(f"resources must have at most {self.max_resource_matches} entries")
        sizes = await self.blobs.file_sizes(sha1.lower() for sha1, _ in wanted)
        return [sizes.get(sha1.lower()) == size for sha1, size in wanted]

    # --- upload -----------------------------------------------------------------------------

    async def check_upload(self, caller: Caller, guid: str) -> Package:
        """Everything an upload needs that does not depend on its body (checked before the
        body is read)."""
        async with self.store.read() as tx:
            package, _, _ = await self._writable(tx, caller, guid)
        if package.state != PackageState.AWAITING_UPLOAD:
            raise _only_once(package.state)
        return package

    async def upload(self, caller: Caller, guid: str, form: UploadForm) -> Package:
        """Stream `bits` to the blobstore (bounded by max_package_bytes), check `resources`,
        and queue the job that makes the package READY (or FAILED). The package is returned
        PROCESSING_UPLOAD."""
        await self.check_upload(caller, guid)
        key = f"{guid}-{secrets.token_hex(6)}"
        info = await self.blobs.write(
            PACKAGE_UPLOADS, key, form.bits(), max_bytes=self.max_package_bytes
        )
        try:
            if not form.has_bits:
                await self.blobs.delete(PACKAGE_UPLOADS, key)
                if form.resources is None:
                    raise Unprocessable(
                        "The upload must include the package in the field 'bits', the files "
                        "the server holds in the field 'resources', or both"
                    )
            elif info.size == 0:
                raise Unprocessable("The uploaded package ('bits') is empty")
            raw = form.resources
            resources = parse_resources(raw, self.max_resource_matches) if raw is not None else []
            async with self.store.write() as tx:
                package, app, space = await self._writable(tx, caller, guid)
                _, processing = await tx.packages.update(guid, _processing_upload)
                await self.engine.submit_in(
                    tx,
                    UPLOAD_OPERATION,
                    target_type="package",
                    target_guid=package.guid,
                    params={
                        "upload_key": key if form.has_bits else "",
                        "resources": resources_to_params(resources),
                    },
                    creator=self.creator(caller),
                )
                await record_app_event(
                    tx,
                    self.clock,
                    caller,
                    "audit.app.package.upload",
                    app,
                    space,
                    package_guid=package.guid,
                    size=info.size if form.has_bits else 0,
                    resources=len(resources),
                )
        except BaseException:
            await self.blobs.delete(PACKAGE_UPLOADS, key)
            raise
        self.engine.wake()
        return processing

    async def _process_upload(self, context: JobContext) -> None:
        guid = context.job.target_guid
        key = str(context.params.get("upload_key", ""))
        resources = resources_from_params(context.params.get("resources"))
        async with self.store.read() as tx:
            package = await tx.packages.get(guid)
        if package is None or package.state != PackageState.PROCESSING_UPLOAD:
            # Deleted meanwhile, or a repeated run after the package was finished.
            if key:
                await self.blobs.delete(PACKAGE_UPLOADS, key)
            return
        try:
            entries: dict[str, ManifestEntry] = {}
            if key:
                entries = await self._ingest_upload(key)
            await self._add_resources(entries, resources)
            check_tree(entries.values())
            total = sum(entry.size for entry in entries.values())
            if len(entries) > self.limits.max_files:
                raise InvalidPackage(f"The package has more than {self.limits.max_files} files")
            if total > self.limits.max_expanded_bytes:
                raise InvalidPackage(
                    f"The package's files add up to more than {self.limits.max_expanded_bytes} "
                    "bytes"
                )
        except InvalidPackage as error:
            await self._fail(guid, error.detail)
            await self._drop_upload(key)
            # Jobs keep the error's class name: one the API maps (422 CF-UnprocessableEntity).
            raise Unprocessable(error.detail) from None
        except Exception:
            if context.job.attempts >= context.job.max_attempts:
                await self._fail(guid, "The package could not be processed (internal error)")
                await self._drop_upload(key)
            raise
        manifest = manifest_bytes(entries)
        checksum = manifest_sha256(manifest)
        await self.blobs.write(PACKAGES, guid, _one(manifest), max_bytes=len(manifest) + 1)
        try:
            async with self.store.write() as tx:
                await tx.packages.update(
                    guid,
                    lambda current: dataclasses.replace(
                        current,
                        state=transition(
                            PACKAGE_TRANSITIONS, current.state, PackageState.READY, what="Package"
                        ),
                        error=None,
                        checksum=checksum,
                        size_in_bytes=total,
                        file_count=len(entries),
                    ),
                )
        except NotFound:  # deleted while it was processed
            await self.blobs.delete(PACKAGES, guid)
            await self._drop_upload(key)
            return
        await self._drop_upload(key)
        await context.set_result(
            package_guid=guid, checksum=checksum, files=len(entries), size=total
        )

    async def _drop_upload(self, key: str) -> None:
        if key:
            await self.blobs.delete(PACKAGE_UPLOADS, key)

    async def _ingest_upload(self, key: str) -> dict[str, ManifestEntry]:
        """Check the uploaded zip and copy its files into the file store."""
        if self.zip_check is not None:
            path = self.blobs.local_path(PACKAGE_UPLOADS, key)
            if path is not None:
                try:
                    await asyncio.to_thread(self.zip_check, path)
                except ValueError as error:
                    raise InvalidPackage(f"The package is not a safe zip: {error}") from None
        handle = await self.blobs.open(PACKAGE_UPLOADS, key)
        if handle is None:
            raise InvalidPackage("The uploaded bits are gone; create a package and upload again")
        with handle:
            try:
                archive = await asyncio.to_thread(zipfile.ZipFile, handle)
            except (zipfile.BadZipFile, zlib.error, EOFError, ValueError):
                raise InvalidPackage("The package ('bits') is not a valid zip archive") from None
            with archive:
                scanned = await asyncio.to_thread(scan_zip, archive, self.limits)
                entries: dict[str, ManifestEntry] = {}
                for entry in scanned:
                    entries[entry.path] = await self._ingest_entry(archive, entry)
                return entries

    async def _ingest_entry(self, archive: zipfile.ZipFile, entry: ZipEntry) -> ManifestEntry:
        try:
            if entry.is_link:
                target = await asyncio.to_thread(read_link, archive, entry)
                stored = await self.blobs.add_file(io.BytesIO(target), max_bytes=len(target))
            else:
                member = await asyncio.to_thread(archive.open, entry.info)
                with member:
                    stored = await self.blobs.add_file(member, max_bytes=self.limits.max_file_bytes)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError):
            raise corrupt_entry(entry.path) from None
        except BlobTooLarge:
            raise InvalidPackage(
                f"The package has a file larger than {self.limits.max_file_bytes} bytes: "
                f"{entry.path!r}"
            ) from None
        if stored.size != entry.info.file_size:
            raise corrupt_entry(entry.path)
        return ManifestEntry(path=entry.path, sha1=stored.sha1, size=stored.size, mode=entry.mode)

    async def _add_resources(
        self, entries: dict[str, ManifestEntry], resources: Sequence[ResourceRef]
    ) -> None:
        """Resolve the matched files from the file store (a missing or different one fails
        the package, naming the path); a path also in the zip must agree with it."""
        if not resources:
            return
        sizes = await self.blobs.file_sizes(ref.sha1 for ref in resources)
        for ref in resources:
            held = sizes.get(ref.sha1)
            if held is None:
                raise InvalidPackage(
                    f"The resource {ref.path!r} (sha1 {ref.sha1}) is not held by the server; "
                    "include it in 'bits'"
                )
            if held != ref.size:
                raise InvalidPackage(
                    f"The resource {ref.path!r} has size {ref.size}, but the server's file "
                    f"with sha1 {ref.sha1} has {held} bytes"
                )
            entry = ManifestEntry(path=ref.path, sha1=ref.sha1, size=ref.size, mode=ref.mode)
            existing = entries.get(ref.path)
            if existing is not None and existing.sha1 != ref.sha1:
                raise InvalidPackage(
                    f"The path {ref.path!r} is given in both 'bits' and 'resources' with "
                    "different contents"
                )
            if existing is None:
                entries[ref.path] = entry

    async def _fail(self, guid: str, detail: str) -> None:
        async with self.store.write() as tx:
            package = await tx.packages.get(guid)
            if package is None or package.state != PackageState.PROCESSING_UPLOAD:
                return
            await tx.packages.update(
                guid,
                lambda current: dataclasses.replace(
                    current,
                    state=transition(
                        PACKAGE_TRANSITIONS, current.state, PackageState.FAILED, what="Package"
                    ),
                    error=f"PackageUploadError - {detail}",
                ),
            )

    async def _delete_package(self, context: JobContext) -> None:
        guid = context.job.target_guid
        async with self.store.write() as tx:
            await tx.packages.delete(guid)
        await self.blobs.delete(PACKAGES, guid)

    # --- the files, for staging -------------------------------------------------------------

    async def manifest(self, package_guid: str) -> list[ManifestEntry]:
        """The files of a READY package (path, sha1, size, mode), sorted by path."""
        async with self.store.read() as tx:
            package = await tx.packages.get(package_guid)
        if package is None or package.state != PackageState.READY:
            raise NotFound.of("Package")
        handle = await self.blobs.open(PACKAGES, package_guid)
        if handle is None:
            raise NotFound.of("Package")
        with handle:
            data = await asyncio.to_thread(handle.read)
        if package.checksum and manifest_sha256(data) != package.checksum:
            raise Unprocessable("The package's manifest does not match its checksum")
        return parse_manifest(data)

    async def materialize(self, package_guid: str, dest_dir: Path) -> int:
        """Write the files of a READY package into `dest_dir` (created if needed; it must be
        empty): files with their modes, links last (their targets checked to stay inside),
        never following a link. Returns the number of files written. NotFound when the
        package is not READY."""
        entries = await self.manifest(package_guid)
        if not await asyncio.to_thread(_empty_dir, dest_dir):
            raise Unprocessable(f"The destination {dest_dir} is not empty")
        for entry in sorted(entries, key=lambda item: (item.is_link, item.path)):
            source = await self.blobs.open_file(entry.sha1)
            if source is None:
                raise Unprocessable(f"The package's file {entry.path!r} is missing from the store")
            with source:
                await asyncio.to_thread(_write_entry, dest_dir, entry, source)
        return len(entries)

    # --- signed downloads -------------------------------------------------------------------

    async def download_url(self, package_guid: str) -> str:
        """An absolute URL on the API from which the package can be fetched as a zip without a
        token, valid for `signed_url_ttl_seconds` (any controller of the cluster accepts it)."""
        return await self.urls.url(package_blob_path(package_guid))

    async def user_download_url(self, caller: Caller, guid: str) -> str:
        """GET /v3/packages/:guid/download: space developers are redirected to a signed URL."""
        async with self.store.write() as tx:
            package, app, space = await self._writable(tx, caller, guid)
            if package.state != PackageState.READY:
                raise Unprocessable("Only READY packages can be downloaded.")
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.package.download",
                app,
                space,
                package_guid=package.guid,
            )
        return await self.download_url(guid)

    async def signed_zip(
        self, method: str, guid: str, expires: str | None, signature: str | None
    ) -> tuple[Package, Path]:
        """The package behind a signed URL, built as a zip in a temporary file the caller
        removes; NotAuthorized (403) for a missing, bad or expired signature."""
        path = package_blob_path(guid)
        await self.urls.check(method, path, expires, signature)
        async with self.store.read() as tx:
            package = await tx.packages.get(guid)
        if package is None:
            raise NotFound.of("Package")
        entries = await self.manifest(guid)
        target = await asyncio.to_thread(_temporary_zip)
        try:
            with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for entry in entries:
                    source = await self.blobs.open_file(entry.sha1)
                    if source is None:
                        raise NotFound.of("Package")
                    with source:
                        await asyncio.to_thread(_zip_entry, archive, entry, source)
        except BaseException:
            await asyncio.to_thread(target.unlink, missing_ok=True)
            raise
        return package, target

    # --- housekeeping -----------------------------------------------------------------------

    def on_job_finished(self, job: Job) -> None:
        """Engine listener: apps deleted with their packages (a cascade) leave manifests
        behind; sweep them once such a delete completes."""
        if job.operation not in _CASCADING_DELETES or job.state.value != "COMPLETE":
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self.sweep_orphan_blobs())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def sweep_orphan_blobs(self) -> int:
        """Remove manifests without a package, and uploads whose package is gone or done with
        them. (Files of the file store are shared between packages and kept.)
        TODO: collect files no manifest refers to."""
        removed = 0
        try:
            stored = await self.blobs.keys(PACKAGES)
            uploads = await self.blobs.keys(PACKAGE_UPLOADS)
            owners = {key: key.rsplit("-", 1)[0] for key in uploads}
            async with self.store.read() as tx:
                known = {
                    package.guid: package
                    for package in await tx.packages.list_all(
                        {"guids": sorted(set(stored) | set(owners.values()))}
                    )
                }
            for guid in stored:
                if guid not in known:
                    removed += await self.blobs.delete(PACKAGES, guid)
            for key, owner in owners.items():
                package = known.get(owner)
                if package is None or package.state not in (
                    PackageState.AWAITING_UPLOAD,
                    PackageState.PROCESSING_UPLOAD,
                ):
                    removed += await self.blobs.delete(PACKAGE_UPLOADS, key)
        except Exception:
            log.exception("packages.sweep_failed")
        if removed:
            log.info("packages.swept", blobs=removed)
        return removed


def _empty_dir(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return not any(path.iterdir())


def _temporary_zip() -> Path:
    descriptor, name = tempfile.mkstemp(prefix="overcast-package-", suffix=".zip")
    os.close(descriptor)
    return Path(name)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _write_entry(root: Path, entry: ManifestEntry, source: BinaryIO) -> None:
    """Write one entry under root without following any link (blocking)."""
    target = root / entry.path
    parent = target.parent
    # Parents are created as real directories; one that exists must not be a link.
    relative_parent = Path(entry.path).parent
    current = root
    for part in relative_parent.parts:
        current = current / part
        if current.is_symlink():
            raise InvalidPackage(f"The package has an entry under a link: {entry.path!r}")
        current.mkdir(exist_ok=True)
    if entry.is_link:
        data = _read_all(source, 4096)
        os.symlink(check_link_target(entry.path, data.decode("utf-8")), target)
        return
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(parent / target.name, flags, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        shutil.copyfileobj(source, handle, _COPY_BLOCK)
        written = handle.tell()
    if written != entry.size:
        raise Unprocessable(f"The package's file {entry.path!r} has changed in the store")
    os.chmod(target, (stat.S_IMODE(entry.mode) & 0o777) | 0o400)


def _read_all(source: BinaryIO, limit: int) -> bytes:
    data = source.read(limit + 1)
    if len(data) > limit:
        raise InvalidPackage("A link target is too long")
    return data


def _zip_entry(archive: zipfile.ZipFile, entry: ManifestEntry, source: BinaryIO) -> None:
    info = zipfile.ZipInfo(entry.path)
    info.external_attr = entry.mode << 16
    info.compress_type = zipfile.ZIP_STORED if entry.is_link else zipfile.ZIP_DEFLATED
    info.file_size = entry.size
    with archive.open(info, "w") as out:
        shutil.copyfileobj(source, out, _COPY_BLOCK)
