"""Packages: an app's source bits (CF v3 `bits` packages) and resource matching.

A package is created empty (AWAITING_UPLOAD). An upload streams the zip (`bits`) to the
blobstore and names, in `resources`, files the server already holds; the `package.upload` job
checks the zip, copies each of its files into the content-addressed file store (by sha1),
resolves the resources there, and stores the package as a manifest (path -> sha1, size, mode):
READY, or FAILED with an error naming the offending entry. The package's checksum is the
sha256 of that canonical manifest, so the same files give the same checksum however they
arrived. The zip, the paths of `resources` and every manifest read back are held to the staging
layer's entry rules, which the composition root hands over as `ArchiveRules` (the controller
may not import staging).

Files are shared between packages. `sweep_orphan_blobs` (every `sweep_interval_seconds`, and
after cascading deletes) removes manifests and uploads without a package, and files no manifest
refers to once they are older than `file_grace_seconds`.

Staging gets a package's files with `materialize(package_guid, dest_dir)`, or as a zip from a
signed URL (`download_url`, `GET /v3/x/blobs/packages/:guid`), like droplets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Protocol

from overcast.controller.access import (
    Caller,
    forbid,
    page_of_app,
    page_visible,
    visible_app,
    visible_of_app,
    writable_of_app,
)
from overcast.controller.base import MetadataPatch, UseCase
from overcast.controller.events import record_app_event
from overcast.controller.package_archive import (
    ArchiveRules,
    CheckedEntry,
    InvalidPackage,
    ManifestEntry,
    PackageLimits,
    PathTree,
    ResourceRef,
    corrupt_entry,
    manifest_bytes,
    manifest_sha256,
    parse_manifest,
    parse_resources,
    resources_from_params,
    resources_to_params,
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
# Linux's PATH_MAX: no link target the archive rules let in is longer.
_MAX_LINK_TARGET_BYTES = 4096


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
        rules: ArchiveRules,
        file_grace_seconds: float,
        sweep_interval_seconds: float,
    ) -> None:
        super().__init__(store, clock, engine)
        self.blobs = blobs
        self.max_package_bytes = max_package_bytes
        self.limits = limits
        self.max_resource_matches = max_resource_matches
        self.urls = SignedUrls(store, clock, signed_url_ttl_seconds)
        # The staging layer's entry rules (zips, paths, trees), from the composition root.
        self.rules = rules
        self.file_grace_seconds = file_grace_seconds
        self.sweep_interval_seconds = sweep_interval_seconds
        self._background: set[asyncio.Task[int]] = set()
        self._sweeper: asyncio.Task[None] | None = None

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
        return await writable_of_app(tx, caller, await tx.packages.get(guid), "Package")

    # --- reads ------------------------------------------------------------------------------

    async def get(self, caller: Caller, guid: str) -> Package:
        async with self.store.read() as tx:
            package, _, _ = await self._visible(tx, caller, guid)
        return package

    async def page(self, caller: Caller, query: ListQuery) -> Page[Package]:
        async with self.store.read() as tx:
            return await page_visible(tx, caller, tx.packages, query)

    async def of_app(self, caller: Caller, app_guid: str, query: ListQuery) -> Page[Package]:
        async with self.store.read() as tx:
            return await page_of_app(tx, caller, app_guid, tx.packages, query)

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
        # Touched: the client may now leave these files out of its upload, so the sweep must
        # spare them for a while even if no package refers to them.
        sizes = await self.blobs.file_sizes((sha1.lower() for sha1, _ in wanted), touch=True)
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
            resources = (
                parse_resources(raw, self.max_resource_matches, self.rules.path_check)
                if raw is not None
                else []
            )
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
            directories: list[str] = []
            if key:
                entries, directories = await self._ingest_upload(key)
            await self._add_resources(entries, resources)
            self._tree(directories, entries.values(), "The package's files and resources clash")
            total = self._check_limits((entry.path, entry.size) for entry in entries.values())
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

    async def _ingest_upload(self, key: str) -> tuple[dict[str, ManifestEntry], list[str]]:
        """Check the uploaded zip (the archive rules' `zip_check`) and copy its files and links
        into the file store; the manifest entries, and the zip's directories."""
        async with self._upload_path(key) as path:
            try:
                checked = await asyncio.to_thread(self.rules.zip_check, path)
            except ValueError as error:
                raise InvalidPackage(f"The package is not a safe zip: {error}") from None
            contents = [entry for entry in checked if entry.kind != "directory"]
            self._check_limits((entry.path, entry.size) for entry in contents)
            try:
                archive = await asyncio.to_thread(zipfile.ZipFile, path)
            except (zipfile.BadZipFile, zlib.error, EOFError, ValueError):
                raise InvalidPackage("The package ('bits') is not a valid zip archive") from None
            with archive:
                # The checked entries carry normalised paths; find each one's member.
                members = {self.rules.path_check(i.orig_filename): i for i in archive.infolist()}
                entries: dict[str, ManifestEntry] = {}
                for entry in contents:
                    member = members.get(entry.path)
                    if member is None:
                        raise corrupt_entry(entry.path)
                    entries[entry.path] = await self._ingest_entry(archive, member, entry)
        directories = [entry.path for entry in checked if entry.kind == "directory"]
        return entries, directories

    @contextlib.asynccontextmanager
    async def _upload_path(self, key: str) -> AsyncIterator[Path]:
        """The uploaded zip as a file on this machine (a temporary copy for a backend that
        keeps none)."""
        path = self.blobs.local_path(PACKAGE_UPLOADS, key)
        if path is not None:
            yield path
            return
        handle = await self.blobs.open(PACKAGE_UPLOADS, key)
        if handle is None:
            raise InvalidPackage("The uploaded bits are gone; create a package and upload again")
        copy = await asyncio.to_thread(_temporary_zip)
        try:
            with handle:
                await asyncio.to_thread(_copy_to, handle, copy)
            yield copy
        finally:
            await asyncio.to_thread(copy.unlink, missing_ok=True)

    async def _ingest_entry(
        self, archive: zipfile.ZipFile, member: zipfile.ZipInfo, entry: CheckedEntry
    ) -> ManifestEntry:
        """Copy one checked file (or link target) into the file store; it must be the very
        content the check hashed."""
        try:
            source = await asyncio.to_thread(archive.open, member)
            with source:
                stored = await self.blobs.add_file(source, max_bytes=entry.size)
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            NotImplementedError,
            RuntimeError,
            BlobTooLarge,
        ):
            raise corrupt_entry(entry.path) from None
        if stored.sha1 != entry.sha1 or stored.size != entry.size:
            raise corrupt_entry(entry.path)
        return ManifestEntry.of(entry, stored.sha1)

    def _check_limits(self, sizes: Iterable[tuple[str, int]]) -> int:
        """The package limits, over (path, size) of its files and links; their total size."""
        listed = list(sizes)
        limits = self.limits
        if len(listed) > limits.max_files:
            raise InvalidPackage(f"The package has more than {limits.max_files} files")
        total = 0
        for path, size in listed:
            if size > limits.max_file_bytes:
                raise InvalidPackage(
                    f"The package has a file larger than {limits.max_file_bytes} bytes: {path!r}"
                )
            total += size
        if total > limits.max_expanded_bytes:
            raise InvalidPackage(
                f"The package's files add up to more than {limits.max_expanded_bytes} bytes"
            )
        return total

    def _tree(
        self, directories: Iterable[str], entries: Iterable[ManifestEntry], problem: str
    ) -> PathTree:
        """The archive rules' tree of these entries: nothing twice, nothing under a link or a
        file; InvalidPackage (`problem: ...`, naming the entry) otherwise."""
        tree = self.rules.new_tree()
        try:
            for path in directories:
                tree.add(path, path, "directory")
            for entry in entries:
                tree.add(entry.path, entry.path, entry.kind)
        except ValueError as error:
            raise InvalidPackage(f"{problem}: {error}") from None
        return tree

    async def _add_resources(
        self, entries: dict[str, ManifestEntry], resources: Sequence[ResourceRef]
    ) -> None:
        """Resolve the matched files from the file store (a missing or different one fails
        the package, naming the path); a path also in the zip must agree with it."""
        if not resources:
            return
        # Touched, so that the sweep spares them until the manifest refers to them.
        sizes = await self.blobs.file_sizes((ref.sha1 for ref in resources), touch=True)
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
        entries, _ = await self._checked_manifest(package_guid)
        return entries

    async def _checked_manifest(self, package_guid: str) -> tuple[list[ManifestEntry], PathTree]:
        """The manifest, held again to the archive rules (it decides where files are written),
        and its tree, to which the links' targets are still to be added."""
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
        entries = parse_manifest(data)
        for entry in entries:
            try:
                normal = self.rules.path_check(entry.path)
            except ValueError as error:
                raise InvalidPackage(f"The package's manifest is unsafe: {error}") from None
            if normal != entry.path:
                raise InvalidPackage(f"The package's manifest has a bad path: {entry.path!r}")
        tree = self._tree((), entries, "The package's manifest is unsafe")
        return sorted(entries, key=lambda entry: entry.path), tree

    async def materialize(self, package_guid: str, dest_dir: Path) -> int:
        """Write the files of a READY package into `dest_dir` (created if needed; it must be
        empty): files with their modes, links last (their targets checked to stay inside, on
        their own and through each other), never following a link. Returns the number of
        files written. NotFound when the package is not READY."""
        entries, tree = await self._checked_manifest(package_guid)
        targets: dict[str, str] = {}
        for entry in entries:
            if entry.is_link:
                targets[entry.path] = await self._link_target(entry)
        try:
            for path, target in targets.items():
                tree.add_link(path, path, target)
            tree.check_link_chains()
        except ValueError as error:
            raise InvalidPackage(f"The package's manifest is unsafe: {error}") from None
        if not await asyncio.to_thread(_empty_dir, dest_dir):
            raise Unprocessable(f"The destination {dest_dir} is not empty")
        for entry in entries:
            if entry.is_link:
                continue
            source = await self._open_file(entry)
            with source:
                await asyncio.to_thread(_write_file, dest_dir, entry, source)
        for path, target in targets.items():
            await asyncio.to_thread(_write_link, dest_dir, path, target)
        return len(entries)

    async def _open_file(self, entry: ManifestEntry) -> BinaryIO:
        source = await self.blobs.open_file(entry.sha1)
        if source is None:
            raise Unprocessable(f"The package's file {entry.path!r} is missing from the store")
        return source

    async def _link_target(self, entry: ManifestEntry) -> str:
        source = await self._open_file(entry)
        with source:
            data = await asyncio.to_thread(source.read, _MAX_LINK_TARGET_BYTES + 1)
        try:
            if len(data) > _MAX_LINK_TARGET_BYTES:
                raise ValueError("too long")
            return data.decode("utf-8")
        except ValueError:
            raise InvalidPackage(
                f"The package has a link with an unsafe target: {entry.path!r}"
            ) from None

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
        """Remove manifests without a package, uploads whose package is gone or done with them,
        and files of the file store that no manifest refers to (once older than
        `file_grace_seconds`: a file an upload has just stored or a client has just been told
        the server holds is kept). Returns how many blobs and files were removed."""
        removed = files = 0
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
            files = await self._sweep_files()
        except Exception:
            log.exception("packages.sweep_failed")
        if removed or files:
            log.info("packages.swept", blobs=removed, files=files)
        return removed + files

    async def _sweep_files(self) -> int:
        """Delete the file store's files that are older than the grace period and that no
        manifest refers to. Files are listed before manifests are read: a manifest written in
        between refers to files just stored or touched, which the grace period (checked again
        as each file is deleted) keeps."""
        cutoff = self.clock.now() - timedelta(seconds=self.file_grace_seconds)
        candidates = [file for file in await self.blobs.stored_files() if file.modified < cutoff]
        if not candidates:
            return 0
        referenced: set[str] = set()
        for guid in await self.blobs.keys(PACKAGES):
            handle = await self.blobs.open(PACKAGES, guid)
            if handle is None:  # deleted meanwhile, with its package
                continue
            with handle:
                data = await asyncio.to_thread(handle.read)
            # A manifest that cannot be read stops the sweep (InvalidPackage): its files are
            # unknown, and must not be taken for unreferenced.
            referenced.update(entry.sha1 for entry in parse_manifest(data))
        removed = 0
        for file in candidates:
            if file.sha1 not in referenced:
                removed += await self.blobs.delete_file(file.sha1, modified_before=cutoff)
        return removed

    def start_sweeping(self) -> None:
        """Sweep every `sweep_interval_seconds` (0: never), from the next interval on."""
        if self.sweep_interval_seconds > 0 and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="packages-sweeper")

    async def stop_sweeping(self) -> None:
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_seconds)
            await self.sweep_orphan_blobs()


def _empty_dir(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return not any(path.iterdir())


def _temporary_zip() -> Path:
    descriptor, name = tempfile.mkstemp(prefix="overcast-package-", suffix=".zip")
    os.close(descriptor)
    return Path(name)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _parent_of(root: Path, path: str) -> Path:
    """The directory `path` goes in, created as real directories; one that exists must not be
    a link (blocking)."""
    current = root
    for part in Path(path).parent.parts:
        current = current / part
        if current.is_symlink():
            raise InvalidPackage(f"The package has an entry under a link: {path!r}")
        current.mkdir(exist_ok=True)
    return current


def _write_file(root: Path, entry: ManifestEntry, source: BinaryIO) -> None:
    """Write one file under root without following any link (blocking)."""
    target = _parent_of(root, entry.path) / Path(entry.path).name
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(target, flags, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        shutil.copyfileobj(source, handle, _COPY_BLOCK)
        written = handle.tell()
        if written != entry.size:
            raise Unprocessable(f"The package's file {entry.path!r} has changed in the store")
        os.fchmod(handle.fileno(), (stat.S_IMODE(entry.mode) & 0o777) | 0o400)


def _write_link(root: Path, path: str, target: str) -> None:
    os.symlink(target, _parent_of(root, path) / Path(path).name)


def _copy_to(source: BinaryIO, target: Path) -> None:
    with target.open("wb") as handle:
        shutil.copyfileobj(source, handle, _COPY_BLOCK)


def _zip_entry(archive: zipfile.ZipFile, entry: ManifestEntry, source: BinaryIO) -> None:
    info = zipfile.ZipInfo(entry.path)
    info.external_attr = entry.mode << 16
    info.compress_type = zipfile.ZIP_STORED if entry.is_link else zipfile.ZIP_DEFLATED
    info.file_size = entry.size
    with archive.open(info, "w") as out:
        shutil.copyfileobj(source, out, _COPY_BLOCK)
