"""Droplets: what an app runs. Created empty (AWAITING_UPLOAD), filled by an upload that a job
checks and stores in the blobstore (STAGED or FAILED), assigned as an app's current droplet,
and handed to cells as a signed download URL (`download_url`, `for_start`)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from overcast.controller.access import (
    Caller,
    forbid,
    page_of_app,
    page_visible,
    visible_app,
    visible_of_app,
    writable_of_app,
)
from overcast.controller.apps import new_process
from overcast.controller.base import MetadataPatch, UseCase
from overcast.controller.blob_urls import droplet_blob_path
from overcast.controller.droplet_archive import (
    MAX_COMMAND_CHARS,
    MAX_PROCESS_TYPES,
    DropletReport,
    InvalidDroplet,
    inspect_droplet,
)
from overcast.controller.events import record_app_event
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
from overcast.models.lifecycle import DROPLET_TRANSITIONS, DropletState, transition
from overcast.models.metadata import patch_metadata
from overcast.models.query import ListQuery, Page
from overcast.models.resources import App, Droplet, DropletBuildpack, Metadata, Space
from overcast.store.base import Store, Tx
from overcast.store.blobs import DROPLETS, UPLOADS, BlobStore

log = get_logger(__name__)

UPLOAD_OPERATION = "droplet.upload"
DELETE_OPERATION = "droplet.delete"
HIDDEN = "[PRIVATE DATA HIDDEN]"
# An uploaded droplet may expand to this many times the upload limit, no more.
MAX_EXPANSION = 4
# Deletes after which droplet blobs may have lost their rows (cascades from apps).
_CASCADING_DELETES = frozenset({"app.delete", "space.delete", "organization.delete"})
_PROCESS_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class BlobDownload:
    """A droplet blob a signed URL may fetch: a local file, or a file object to stream."""

    droplet_guid: str
    sha256: str
    size: int | None
    path: Path | None


def _no_access(app_guid: str) -> Unprocessable:
    return Unprocessable(
        f"App with guid '{app_guid}' does not exist, or you do not have access to it."
    )


def _unable_to_assign() -> Unprocessable:
    return Unprocessable(
        "Unable to assign current droplet. Ensure the droplet exists and belongs to this app."
    )


def check_process_types(process_types: Mapping[str, str]) -> dict[str, str]:
    if len(process_types) > MAX_PROCESS_TYPES:
        raise Unprocessable(f"Process types must be at most {MAX_PROCESS_TYPES}")
    for kind, command in process_types.items():
        if not _PROCESS_TYPE.match(kind):
            raise Unprocessable(f"Invalid process type {kind!r}")
        if not command or len(command) > MAX_COMMAND_CHARS or "\x00" in command:
            raise Unprocessable(
                f"The command of process type {kind!r} must be 1 to {MAX_COMMAND_CHARS} characters"
            )
    return dict(process_types)


def _redacted(droplet: Droplet) -> Droplet:
    return dataclasses.replace(
        droplet,
        process_types=dict.fromkeys(droplet.process_types, HIDDEN),
        execution_metadata=HIDDEN if droplet.execution_metadata else "",
    )


class Droplets(UseCase):
    def __init__(
        self,
        store: Store,
        clock: Clock,
        engine: JobEngine,
        *,
        blobs: BlobStore,
        max_droplet_bytes: int,
        signed_url_ttl_seconds: int,
    ) -> None:
        super().__init__(store, clock, engine)
        self.blobs = blobs
        self.max_droplet_bytes = max_droplet_bytes
        self.urls = SignedUrls(store, clock, signed_url_ttl_seconds)
        self._background: set[asyncio.Task[int]] = set()

    def operations(self) -> list[Operation]:
        return [
            Operation(
                UPLOAD_OPERATION,
                "default",
                (StageSpec("check and store droplet", self._process_upload),),
            ),
            Operation(
                DELETE_OPERATION,
                "deletes",
                (StageSpec("delete droplet", self._delete_droplet),),
            ),
        ]

    @property
    def api_url(self) -> str:
        return self.urls.api_url

    @api_url.setter
    def api_url(self, url: str) -> None:
        self.urls.api_url = url.rstrip("/")

    # --- visibility -------------------------------------------------------------------------

    async def _visible(self, tx: Tx, caller: Caller, guid: str) -> tuple[Droplet, App, Space]:
        return await visible_of_app(tx, caller, await tx.droplets.get(guid), "Droplet")

    async def _writable(self, tx: Tx, caller: Caller, guid: str) -> tuple[Droplet, App, Space]:
        return await writable_of_app(tx, caller, await tx.droplets.get(guid), "Droplet")

    async def _shown(self, tx: Tx, caller: Caller, droplets: list[Droplet]) -> list[Droplet]:
        """Process commands may hold secrets: only those who may read the space's secrets
        see them (as CF redacts them)."""
        if caller.admin or not droplets:
            return droplets
        apps = await tx.apps.list_all({"guids": sorted({d.app_guid for d in droplets})})
        spaces = {app.guid: app.space_guid for app in apps}
        return [
            droplet
            if caller.permissions.can_see_space_secrets(spaces.get(droplet.app_guid, ""))
            else _redacted(droplet)
            for droplet in droplets
        ]

    # --- reads ------------------------------------------------------------------------------

    async def get(self, caller: Caller, guid: str) -> Droplet:
        async with self.store.read() as tx:
            droplet, _, _ = await self._visible(tx, caller, guid)
            return (await self._shown(tx, caller, [droplet]))[0]

    async def page(self, caller: Caller, query: ListQuery) -> Page[Droplet]:
        async with self.store.read() as tx:
            page = await page_visible(tx, caller, tx.droplets, query)
            return Page(items=await self._shown(tx, caller, page.items), total=page.total)

    async def of_app(self, caller: Caller, app_guid: str, query: ListQuery) -> Page[Droplet]:
        async with self.store.read() as tx:
            page = await page_of_app(tx, caller, app_guid, tx.droplets, query)
            return Page(items=await self._shown(tx, caller, page.items), total=page.total)

    async def of_package(
        self, caller: Caller, package_guid: str, query: ListQuery
    ) -> Page[Droplet]:
        """GET /v3/packages/:guid/droplets: the droplets staged from a package."""
        async with self.store.read() as tx:
            package, _, _ = await visible_of_app(
                tx, caller, await tx.packages.get(package_guid), "Package"
            )
            droplets = await tx.droplets.list_all(
                {**query.filters, "app_guids": [package.app_guid]}
            )
            mine = [droplet for droplet in droplets if droplet.package_guid == package.guid]
            mine.sort(key=lambda droplet: droplet.created_at, reverse=query.descending)
            start = (query.page - 1) * query.per_page
            shown = await self._shown(tx, caller, mine[start : start + query.per_page])
            return Page(items=shown, total=len(mine))

    async def current(self, caller: Caller, app_guid: str) -> Droplet:
        async with self.store.read() as tx:
            app, _ = await visible_app(tx, caller, app_guid)
            droplet = (
                await tx.droplets.get(app.current_droplet_guid)
                if app.current_droplet_guid
                else None
            )
            if droplet is None:
                raise NotFound.of("Droplet")
            return (await self._shown(tx, caller, [droplet]))[0]

    async def current_guid(self, caller: Caller, app_guid: str) -> tuple[App, str]:
        """GET /v3/apps/:guid/relationships/current_droplet (404 when none is assigned)."""
        async with self.store.read() as tx:
            app, _ = await visible_app(tx, caller, app_guid)
            if not app.current_droplet_guid or not await tx.droplets.get(app.current_droplet_guid):
                raise NotFound.of("Droplet")
            return app, app.current_droplet_guid

    # --- changes ----------------------------------------------------------------------------

    async def create(
        self,
        caller: Caller,
        app_guid: str,
        *,
        process_types: Mapping[str, str] | None = None,
        labels: MetadataPatch = None,
        annotations: MetadataPatch = None,
    ) -> Droplet:
        types = check_process_types(process_types or {})
        now = self.clock.now()
        async with self.store.write() as tx:
            try:
                app, space = await visible_app(tx, caller, app_guid)
            except NotFound:
                raise _no_access(app_guid) from None
            if not caller.permissions.can_develop_in_space(space.guid):
                raise forbid()
            droplet = Droplet(
                guid=new_guid(),
                app_guid=app.guid,
                created_at=now,
                updated_at=now,
                state=DropletState.AWAITING_UPLOAD,
                lifecycle_type=app.lifecycle_type,
                lifecycle_buildpacks=app.buildpacks,
                stack=app.stack,
                process_types=types,
                metadata=patch_metadata(Metadata(), labels, annotations),
            )
            await tx.droplets.add(droplet)
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.droplet.create",
                app,
                space,
                droplet_guid=droplet.guid,
                request={"process_types": sorted(types)},
            )
        return droplet

    async def update(
        self, caller: Caller, guid: str, *, labels: MetadataPatch, annotations: MetadataPatch
    ) -> Droplet:
        async with self.store.write() as tx:
            await self._writable(tx, caller, guid)
            _, after = await tx.droplets.update(
                guid,
                lambda current: dataclasses.replace(
                    current, metadata=patch_metadata(current.metadata, labels, annotations)
                ),
            )
        return after

    async def delete(self, caller: Caller, guid: str) -> Job:
        async with self.store.write() as tx:
            droplet, app, space = await self._writable(tx, caller, guid)
            job = await self.engine.submit_in(
                tx,
                DELETE_OPERATION,
                target_type="droplet",
                target_guid=droplet.guid,
                creator=self.creator(caller),
            )
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.droplet.delete",
                app,
                space,
                droplet_guid=droplet.guid,
            )
        self.engine.wake()
        return job

    async def set_current(self, caller: Caller, app_guid: str, droplet_guid: str) -> App:
        """Assign the app's current droplet (it must be STAGED and the app's own) and create a
        process, with no instances, for every type of the droplet the app lacks (CF's
        ProcessCreateFromAppDroplet). Running instances keep their droplet until restarted."""
        now = self.clock.now()
        async with self.store.write() as tx:
            app, space = await visible_app(tx, caller, app_guid)
            if not caller.permissions.can_develop_in_space(space.guid):
                raise forbid()
            droplet = await tx.droplets.get(droplet_guid)
            if droplet is None or droplet.app_guid != app.guid:
                raise _unable_to_assign()
            if droplet.state != DropletState.STAGED:
                raise Unprocessable(
                    "Unable to assign current droplet: only a STAGED droplet can be assigned "
                    f"(this one is {droplet.state.value})."
                )
            _, after = await tx.apps.update(
                app.guid,
                lambda current: dataclasses.replace(current, current_droplet_guid=droplet.guid),
            )
            existing = {process.type for process in await tx.processes.of_app(app.guid)}
            for kind in sorted(set(droplet.process_types) - existing):
                process = new_process(app.guid, kind, now)
                if kind != "web":
                    process = dataclasses.replace(process, instances=0)
                await tx.processes.add(process)
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.droplet.mapped",
                after,
                space,
                request={"droplet_guid": droplet.guid},
            )
        return after

    # --- upload -----------------------------------------------------------------------------

    async def check_upload(self, caller: Caller, guid: str) -> Droplet:
        """Everything an upload needs that does not depend on its bits (run before reading
        them, so a refused upload is not read first)."""
        async with self.store.read() as tx:
            droplet, _, _ = await self._writable(tx, caller, guid)
        if droplet.state != DropletState.AWAITING_UPLOAD:
            raise _only_once(droplet.state)
        return droplet

    async def upload(
        self, caller: Caller, guid: str, bits: AsyncIterable[bytes]
    ) -> tuple[Droplet, Job]:
        """Store the uploaded bits (streamed, bounded by max_droplet_bytes) and queue the job
        that checks them and makes the droplet STAGED (or FAILED)."""
        await self.check_upload(caller, guid)
        key = f"{guid}-{secrets.token_hex(6)}"
        info = await self.blobs.write(UPLOADS, key, bits, max_bytes=self.max_droplet_bytes)
        try:
            if info.size == 0:
                raise Unprocessable("The uploaded droplet ('bits') is empty")
            async with self.store.write() as tx:
                droplet, app, space = await self._writable(tx, caller, guid)
                # Checked on the locked row: of two concurrent uploads, one wins.
                _, processing = await tx.droplets.update(guid, _processing_upload)
                job = await self.engine.submit_in(
                    tx,
                    UPLOAD_OPERATION,
                    target_type="droplet",
                    target_guid=droplet.guid,
                    params={"upload_key": key},
                    creator=self.creator(caller),
                )
                await record_app_event(
                    tx,
                    self.clock,
                    caller,
                    "audit.app.droplet.upload",
                    app,
                    space,
                    droplet_guid=droplet.guid,
                    size=info.size,
                )
        except BaseException:
            await self.blobs.delete(UPLOADS, key)
            raise
        self.engine.wake()
        return (await self._shown_one(caller, processing)), job

    async def _shown_one(self, caller: Caller, droplet: Droplet) -> Droplet:
        async with self.store.read() as tx:
            return (await self._shown(tx, caller, [droplet]))[0]

    async def _process_upload(self, context: JobContext) -> None:
        guid = context.job.target_guid
        key = str(context.params.get("upload_key", ""))
        async with self.store.read() as tx:
            droplet = await tx.droplets.get(guid)
        if droplet is None or droplet.state != DropletState.PROCESSING_UPLOAD:
            # Deleted meanwhile, or a repeated run after the droplet was finished.
            if key:
                await self.blobs.delete(UPLOADS, key)
            return
        # The upload, or (a repeated run after it was moved) the droplet blob.
        kind, name = DROPLETS, guid
        if key and await self.blobs.size(UPLOADS, key) is not None:
            kind, name = UPLOADS, key
        try:
            report = await self._inspect(kind, name)
        except InvalidDroplet as error:
            await self._fail(guid, error.detail)
            await self.blobs.delete(kind, name)
            # Jobs keep the error's class name: one the API maps (422 CF-UnprocessableEntity).
            raise Unprocessable(error.detail) from None
        except Exception:
            if context.job.attempts >= context.job.max_attempts:
                await self._fail(guid, "The droplet could not be processed (internal error)")
            raise
        if report is None:
            await self._fail(guid, "The uploaded bits are gone; create a droplet and upload again")
            raise Unprocessable("The uploaded bits are gone")
        info = report.staging_info
        process_types = droplet.process_types or (info.process_types if info else {})
        if not process_types:
            detail = (
                "The droplet has no process types: give process_types when creating it, or "
                "include staging_info.yml with process_types"
            )
            await self._fail(guid, detail)
            await self.blobs.delete(kind, name)
            raise Unprocessable(detail)
        if kind == UPLOADS:
            await self.blobs.move(UPLOADS, key, DROPLETS, guid)
        detected = info.detected_buildpack if info else None
        buildpacks = droplet.buildpacks or (
            (DropletBuildpack(name=detected, buildpack_name=detected),) if detected else ()
        )
        try:
            await self._mark_staged(
                guid, report, process_types=process_types, buildpacks=buildpacks
            )
        except NotFound:  # deleted while it was checked
            await self.blobs.delete(DROPLETS, guid)
            return
        await context.set_result(droplet_guid=guid, checksum=report.sha256, size=report.size)

    async def _inspect(self, kind: str, name: str) -> DropletReport | None:
        """The blob checked as a droplet (InvalidDroplet when it is not one); None if gone."""
        handle = await self.blobs.open(kind, name)
        if handle is None:
            return None
        try:
            return await asyncio.to_thread(
                inspect_droplet, handle, max_expanded_bytes=self.max_droplet_bytes * MAX_EXPANSION
            )
        finally:
            handle.close()

    # --- staging ----------------------------------------------------------------------------

    async def accept_staged(self, guid: str, bits: AsyncIterable[bytes]) -> Droplet:
        """A cell's staged droplet for a STAGING droplet: stored, checked, and STAGED with what
        its staging_info.yml says. Unprocessable (the droplet is left STAGING for the caller
        to fail) when the bits are not a runnable droplet."""
        key = f"{guid}-{secrets.token_hex(6)}"
        await self.blobs.write(UPLOADS, key, bits, max_bytes=self.max_droplet_bytes)
        try:
            report = await self._inspect(UPLOADS, key)
        except InvalidDroplet as error:
            await self.blobs.delete(UPLOADS, key)
            raise Unprocessable(f"The staged droplet is invalid: {error.detail}") from None
        info = report.staging_info if report is not None else None
        if report is None or info is None or not info.process_types:
            await self.blobs.delete(UPLOADS, key)
            raise Unprocessable("The staged droplet has no process types")
        await self.blobs.move(UPLOADS, key, DROPLETS, guid)
        buildpacks = tuple(
            DropletBuildpack(
                name=used.name,
                buildpack_name=used.name,
                version=used.version,
                detect_output=used.detect_output,
            )
            for used in info.buildpacks
        )
        try:
            return await self._mark_staged(
                guid,
                report,
                process_types=dict(info.process_types),
                buildpacks=buildpacks,
                execution_metadata=info.start_command or "",
            )
        except BaseException:
            await self.blobs.delete(DROPLETS, guid)
            raise

    async def _mark_staged(
        self,
        guid: str,
        report: DropletReport,
        *,
        process_types: dict[str, str],
        buildpacks: tuple[DropletBuildpack, ...],
        execution_metadata: str | None = None,
    ) -> Droplet:
        """The stored, checked droplet becomes STAGED with what it runs."""

        def staged(current: Droplet) -> Droplet:
            return dataclasses.replace(
                current,
                state=transition(
                    DROPLET_TRANSITIONS, current.state, DropletState.STAGED, what="Droplet"
                ),
                error=None,
                checksum=report.sha256,
                size_in_bytes=report.size,
                process_types=process_types,
                buildpacks=buildpacks,
                execution_metadata=(
                    current.execution_metadata if execution_metadata is None else execution_metadata
                ),
            )

        async with self.store.write() as tx:
            _, after = await tx.droplets.update(guid, staged)
        return after

    async def fail_staging(self, tx: Tx, guid: str, error: str) -> None:
        """Within the caller's transaction: a STAGING droplet becomes FAILED with `error`."""
        droplet = await tx.droplets.get(guid)
        if droplet is None or droplet.state != DropletState.STAGING:
            return
        await tx.droplets.update(
            guid,
            lambda current: dataclasses.replace(
                current,
                state=transition(
                    DROPLET_TRANSITIONS, current.state, DropletState.FAILED, what="Droplet"
                ),
                error=error,
            ),
        )

    async def _fail(self, guid: str, detail: str) -> None:
        async with self.store.write() as tx:
            droplet = await tx.droplets.get(guid)
            if droplet is None or droplet.state != DropletState.PROCESSING_UPLOAD:
                return
            await tx.droplets.update(
                guid,
                lambda current: dataclasses.replace(
                    current,
                    state=transition(
                        DROPLET_TRANSITIONS, current.state, DropletState.FAILED, what="Droplet"
                    ),
                    error=f"UploadError - {detail}",
                ),
            )

    async def _delete_droplet(self, context: JobContext) -> None:
        guid = context.job.target_guid
        async with self.store.write() as tx:
            droplet = await tx.droplets.get(guid)
            if droplet is not None:
                app = await tx.apps.get(droplet.app_guid)
                if app is not None and app.current_droplet_guid == guid:
                    await tx.apps.update(
                        app.guid,
                        lambda current: dataclasses.replace(current, current_droplet_guid=None),
                    )
                await tx.droplets.delete(guid)
        await self.blobs.delete(DROPLETS, guid)

    # --- downloads --------------------------------------------------------------------------

    async def download_url(self, droplet_guid: str) -> str:
        """An absolute URL on the API from which the droplet can be fetched without a token,
        valid for `signed_url_ttl_seconds` (any controller of the cluster accepts it)."""
        return await self.urls.url(droplet_blob_path(droplet_guid))

    async def for_start(self, app_guid: str) -> tuple[Droplet, str] | None:
        """What a cell needs to run the app: its current droplet (STAGED, with checksum and
        process types) and a fresh signed download URL; None when it has no usable droplet."""
        async with self.store.read() as tx:
            app = await tx.apps.get(app_guid)
            if app is None or not app.current_droplet_guid:
                return None
            droplet = await tx.droplets.get(app.current_droplet_guid)
        if droplet is None or droplet.state != DropletState.STAGED or not droplet.checksum:
            return None
        return droplet, await self.download_url(droplet.guid)

    async def user_download_url(self, caller: Caller, guid: str) -> str:
        """GET /v3/droplets/:guid/download: space developers are redirected to a signed URL."""
        async with self.store.write() as tx:
            droplet, app, space = await self._writable(tx, caller, guid)
            if droplet.state != DropletState.STAGED:
                raise Unprocessable("Only staged droplets can be downloaded.")
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.droplet.download",
                app,
                space,
                droplet_guid=droplet.guid,
            )
        return await self.download_url(guid)

    async def signed_blob(
        self, method: str, guid: str, expires: str | None, signature: str | None
    ) -> BlobDownload:
        """The droplet blob behind a signed URL; NotAuthorized (403) for a missing, bad or
        expired signature, before anything about the droplet is looked at."""
        path = droplet_blob_path(guid)
        await self.urls.check(method, path, expires, signature)
        async with self.store.read() as tx:
            droplet = await tx.droplets.get(guid)
        if droplet is None or droplet.state != DropletState.STAGED or not droplet.checksum:
            raise NotFound.of("Droplet")
        size = await self.blobs.size(DROPLETS, guid)
        if size is None:
            raise NotFound.of("Droplet")
        return BlobDownload(
            droplet_guid=guid,
            sha256=droplet.checksum,
            size=size,
            path=self.blobs.local_path(DROPLETS, guid),
        )

    async def open_blob(self, guid: str) -> BinaryIO | None:
        """For backends without local files: the blob to stream (after `signed_blob`)."""
        return await self.blobs.open(DROPLETS, guid)

    # --- housekeeping -----------------------------------------------------------------------

    def on_job_finished(self, job: Job) -> None:
        """Engine listener: apps deleted with their droplets (a cascade) leave blobs behind;
        sweep them once such a delete completes."""
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
        """Remove droplet blobs without a droplet, and uploads whose droplet is gone or done
        with them. Returns how many blobs were removed."""
        removed = 0
        try:
            stored = await self.blobs.keys(DROPLETS)
            uploads = await self.blobs.keys(UPLOADS)
            owners = {key: key.rsplit("-", 1)[0] for key in uploads}
            async with self.store.read() as tx:
                known = {
                    droplet.guid: droplet
                    for droplet in await tx.droplets.list_all(
                        {"guids": sorted(set(stored) | set(owners.values()))}
                    )
                }
            for guid in stored:
                if guid not in known:
                    removed += await self.blobs.delete(DROPLETS, guid)
            for key, owner in owners.items():
                droplet = known.get(owner)
                if droplet is None or droplet.state not in (
                    DropletState.AWAITING_UPLOAD,
                    DropletState.PROCESSING_UPLOAD,
                ):
                    removed += await self.blobs.delete(UPLOADS, key)
        except Exception:
            log.exception("droplets.sweep_failed")
        if removed:
            log.info("droplets.swept", blobs=removed)
        return removed


def _only_once(state: DropletState) -> Unprocessable:
    return Unprocessable(
        f"Droplet may only be uploaded once (it is {state.value}); create a new droplet"
    )


def _processing_upload(current: Droplet) -> Droplet:
    if current.state != DropletState.AWAITING_UPLOAD:
        raise _only_once(current.state)
    state = transition(
        DROPLET_TRANSITIONS, current.state, DropletState.PROCESSING_UPLOAD, what="Droplet"
    )
    return dataclasses.replace(current, state=state)
