"""Builds: a package staged into a droplet on a cell (DESIGN.md section 9, CF v3 builds).

`create` makes the build and its droplet (both STAGING) and queues a `build.stage` job on the
`staging` queue. The job picks a cell through placement (the cell that staged the app last
when it still fits, so its buildpack cache is warm), sends it a `stage` command, and then
watches: the build ends when the cell posts the droplet (or its failure) to a signed URL,
which any controller of the cluster accepts. The job fails the build if its cell is lost,
stops listing it in heartbeats, or runs past the time limit, so no build stays STAGING."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterable

from overcast.bus.messages import StageCommand, StagingSpec
from overcast.controller.access import (
    Caller,
    page_of_app,
    page_visible,
    visible_of_app,
    writable_of_app,
)
from overcast.controller.apps import Lifecycle, check_lifecycle
from overcast.controller.base import MetadataPatch, UseCase
from overcast.controller.buildpacks import Buildpacks
from overcast.controller.cells import CellDirectory
from overcast.controller.droplets import Droplets
from overcast.controller.events import record_app_event
from overcast.controller.logs import LogBuffer
from overcast.controller.packages import Packages
from overcast.controller.placement import PlacementRequest, place
from overcast.controller.scheduler import Scheduler
from overcast.controller.signed_urls import SignedUrls
from overcast.core.clock import Clock
from overcast.core.ids import new_guid
from overcast.core.logging import get_logger
from overcast.core.settings import StagingSettings
from overcast.jobs.engine import JobContext, JobEngine, Operation, Poll, StageOutcome, StageSpec
from overcast.models.environment import user_environment, vcap_application
from overcast.models.errors import NotFound, Unprocessable
from overcast.models.instances import CellState
from overcast.models.lifecycle import (
    BUILD_TRANSITIONS,
    BuildState,
    DropletState,
    PackageState,
    transition,
)
from overcast.models.metadata import patch_metadata
from overcast.models.query import ListQuery, Page
from overcast.models.resources import (
    Actor,
    App,
    AuditEvent,
    Build,
    BuildCreator,
    Droplet,
    Metadata,
    Space,
)
from overcast.store.base import Store, Tx

log = get_logger(__name__)

STAGE_OPERATION = "build.stage"
STAGING_QUEUE = "staging"
STAGING_SOURCE = "STG"
# Cells asked in turn when one refuses or does not answer.
MAX_CELL_TRIES = 3
# Beyond the staging time limit, what the watchdog allows for the upload to arrive.
UPLOAD_GRACE_SECONDS = 60.0
# A cell's heartbeat must be this much newer than the staging's acceptance before its not
# listing the build means the staging is gone (a heartbeat already on its way is older).
HEARTBEAT_MARGIN_SECONDS = 1.0
# CF's error names (the build's `error` is "<name> - <detail>").
INSUFFICIENT_RESOURCES = "InsufficientResources"
STAGING_ERROR = "StagingError"
STAGING_TIME_EXPIRED = "StagingTimeExpired"
KNOWN_REASONS = frozenset(
    {
        STAGING_ERROR,
        STAGING_TIME_EXPIRED,
        INSUFFICIENT_RESOURCES,
        "NoAppDetectedError",
        "BuildpackCompileFailed",
        "BuildpackReleaseFailed",
        "BuildpackNotFound",
        "BuildpackDownloadFailed",
        "InvalidPackage",
    }
)
MAX_FAILURE_DETAIL_CHARS = 4096


def staging_droplet_path(build_guid: str) -> str:
    return f"/v3/x/staging/{build_guid}/droplet"


def staging_failure_path(build_guid: str) -> str:
    return f"/v3/x/staging/{build_guid}/failure"


def _no_package(package_guid: str) -> Unprocessable:
    return Unprocessable(
        f"Unable to use package '{package_guid}'. Ensure that the package exists and you have "
        "access to it."
    )


def failure_text(reason: str, detail: str) -> str:
    """The build's `error`: CF's "<name> - <detail>", the name one CF knows."""
    name = reason if reason in KNOWN_REASONS else STAGING_ERROR
    return f"{name} - {detail[:MAX_FAILURE_DETAIL_CHARS]}"


class Builds(UseCase):
    def __init__(
        self,
        store: Store,
        clock: Clock,
        engine: JobEngine,
        *,
        packages: Packages,
        droplets: Droplets,
        directory: CellDirectory,
        scheduler: Scheduler,
        settings: StagingSettings,
        buildpacks: Buildpacks | None = None,
        logs: LogBuffer | None = None,
    ) -> None:
        super().__init__(store, clock, engine)
        self.packages = packages
        self.droplets = droplets
        self.directory = directory
        self.scheduler = scheduler
        self.settings = settings
        self.logs = logs
        self.buildpacks = buildpacks or Buildpacks()
        self.urls = droplets.urls

    def operations(self) -> list[Operation]:
        # One attempt: a repeated run after a controller restart resumes watching (the build
        # records its cell), and a failure is the build's, not a reason to stage twice.
        return [
            Operation(
                STAGE_OPERATION,
                STAGING_QUEUE,
                (StageSpec("stage on a cell", self._stage),),
                max_attempts=1,
            )
        ]

    @property
    def signed_urls(self) -> SignedUrls:
        return self.urls

    # --- reads ------------------------------------------------------------------------------

    async def _visible(self, tx: Tx, caller: Caller, guid: str) -> tuple[Build, App, Space]:
        return await visible_of_app(tx, caller, await tx.builds.get(guid), "Build")

    async def get(self, caller: Caller, guid: str) -> Build:
        async with self.store.read() as tx:
            build, _, _ = await self._visible(tx, caller, guid)
            return build

    async def page(self, caller: Caller, query: ListQuery) -> Page[Build]:
        async with self.store.read() as tx:
            return await page_visible(tx, caller, tx.builds, query)

    async def of_app(self, caller: Caller, app_guid: str, query: ListQuery) -> Page[Build]:
        async with self.store.read() as tx:
            return await page_of_app(tx, caller, app_guid, tx.builds, query)

    # --- changes ----------------------------------------------------------------------------

    async def create(
        self,
        caller: Caller,
        package_guid: str,
        *,
        lifecycle: Lifecycle | None = None,
        staging_memory_in_mb: int | None = None,
        staging_disk_in_mb: int | None = None,
        labels: MetadataPatch = None,
        annotations: MetadataPatch = None,
    ) -> Build:
        memory = self._limit(
            staging_memory_in_mb, self.settings.memory_mb, self.settings.max_memory_mb, "memory"
        )
        disk = self._limit(
            staging_disk_in_mb, self.settings.disk_mb, self.settings.max_disk_mb, "disk"
        )
        if lifecycle is not None:
            check_lifecycle(lifecycle)
        now = self.clock.now()
        async with self.store.write() as tx:
            try:
                package, app, space = await writable_of_app(
                    tx, caller, await tx.packages.get(package_guid), "Package"
                )
            except NotFound:
                raise _no_package(package_guid) from None
            if package.state != PackageState.READY:
                raise Unprocessable(
                    f"Unable to stage package '{package.guid}': it is {package.state.value}, "
                    "and only a READY package can be staged."
                )
            asked = lifecycle.buildpacks if lifecycle is not None else None
            chosen = asked if asked is not None else app.buildpacks
            self.buildpacks.check_requested(chosen)
            stack = (lifecycle.stack if lifecycle is not None else None) or app.stack
            droplet = Droplet(
                guid=new_guid(),
                app_guid=app.guid,
                created_at=now,
                updated_at=now,
                state=DropletState.STAGING,
                lifecycle_type=app.lifecycle_type,
                lifecycle_buildpacks=chosen,
                stack=stack,
                package_guid=package.guid,
            )
            build = Build(
                guid=new_guid(),
                app_guid=app.guid,
                package_guid=package.guid,
                created_at=now,
                updated_at=now,
                lifecycle_type=app.lifecycle_type,
                lifecycle_buildpacks=chosen,
                stack=stack,
                staging_memory_in_mb=memory,
                staging_disk_in_mb=disk,
                droplet_guid=droplet.guid,
                created_by=BuildCreator(guid=caller.identity.guid, name=caller.identity.name),
                metadata=patch_metadata(Metadata(), labels, annotations),
            )
            await tx.droplets.add(droplet)
            await tx.builds.add(build)
            await self.engine.submit_in(
                tx,
                STAGE_OPERATION,
                target_type="build",
                target_guid=build.guid,
                creator=self.creator(caller),
            )
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.build.create",
                app,
                space,
                build_guid=build.guid,
                package_guid=package.guid,
            )
        self.engine.wake()
        return build

    @staticmethod
    def _limit(asked: int | None, default: int, most: int, what: str) -> int:
        if asked is None:
            return default
        if asked < 1 or asked > most:
            raise Unprocessable(f"Staging {what} in MB must be between 1 and {most}")
        return asked

    async def update(
        self, caller: Caller, guid: str, *, labels: MetadataPatch, annotations: MetadataPatch
    ) -> Build:
        async with self.store.write() as tx:
            await writable_of_app(tx, caller, await tx.builds.get(guid), "Build")
            _, after = await tx.builds.update(
                guid,
                lambda current: dataclasses.replace(
                    current, metadata=patch_metadata(current.metadata, labels, annotations)
                ),
            )
        return after

    # --- the cell's answer (signed URLs) ----------------------------------------------------

    async def accept_droplet(
        self, guid: str, expires: str | None, signature: str | None, bits: AsyncIterable[bytes]
    ) -> Build:
        """The staged droplet from the cell: stored and checked, then the build and droplet
        are STAGED. A build no longer STAGING is a 422 (a late or repeated upload)."""
        await self.urls.check("POST", staging_droplet_path(guid), expires, signature)
        build = await self._staging(guid)
        droplet_guid = build.droplet_guid or ""
        try:
            await self.droplets.accept_staged(droplet_guid, bits)
        except Unprocessable as error:
            await self.fail(guid, STAGING_ERROR, error.detail)
            raise
        finished = await self._finish(guid, BuildState.STAGED, None)
        log.info("build.staged", build_guid=guid, droplet_guid=droplet_guid)
        await self._log(build.app_guid, "Uploaded droplet; staging complete")
        return finished

    async def accept_failure(
        self, guid: str, expires: str | None, signature: str | None, body: bytes
    ) -> Build:
        await self.urls.check("POST", staging_failure_path(guid), expires, signature)
        try:
            report = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Unprocessable("The failure report must be a JSON object") from None
        if not isinstance(report, dict):
            raise Unprocessable("The failure report must be a JSON object")
        reason, detail = report.get("reason"), report.get("detail")
        if not isinstance(reason, str) or not isinstance(detail, str):
            raise Unprocessable("The failure report needs a string reason and detail")
        await self._staging(guid)
        return await self.fail(guid, reason, detail)

    async def _staging(self, guid: str) -> Build:
        async with self.store.read() as tx:
            build = await tx.builds.get(guid)
        if build is None:
            raise NotFound.of("Build")
        if build.state != BuildState.STAGING:
            raise Unprocessable(f"The build is {build.state.value}, no longer STAGING")
        return build

    async def fail(self, guid: str, reason: str, detail: str) -> Build:
        """The build and its droplet FAILED with CF's "<reason> - <detail>"."""
        error = failure_text(reason, detail)
        build = await self._finish(guid, BuildState.FAILED, error)
        log.info("build.failed", build_guid=guid, reason=reason)
        return build

    async def _finish(self, guid: str, state: BuildState, error: str | None) -> Build:
        async with self.store.write() as tx:
            current = await tx.builds.get(guid)
            if current is None:
                raise NotFound.of("Build")
            if current.state != BuildState.STAGING:
                return current
            if error is not None and current.droplet_guid:
                await self.droplets.fail_staging(tx, current.droplet_guid, error)
            _, after = await tx.builds.update(
                guid,
                lambda build: dataclasses.replace(
                    build,
                    state=transition(BUILD_TRANSITIONS, build.state, state, what="Build"),
                    error=error,
                ),
            )
            if state == BuildState.STAGED:
                await self._droplet_created(tx, after)
        return after

    async def _droplet_created(self, tx: Tx, build: Build) -> None:
        """CF's audit.app.droplet.create, on behalf of whoever asked for the build."""
        app = await tx.apps.get(build.app_guid)
        space = await tx.spaces.get(app.space_guid) if app is not None else None
        if app is None or space is None:
            return
        creator = build.created_by
        await tx.events.add(
            AuditEvent(
                guid=new_guid(),
                type="audit.app.droplet.create",
                actor=Actor(guid=creator.guid, type="user", name=creator.name),
                target_guid=app.guid,
                target_type="app",
                target_name=app.name,
                created_at=self.clock.now(),
                data={"droplet_guid": build.droplet_guid, "build_guid": build.guid},
                space_guid=space.guid,
                org_guid=space.org_guid,
            )
        )

    # --- the job ----------------------------------------------------------------------------

    async def _stage(self, context: JobContext) -> StageOutcome:
        async with self.store.read() as tx:
            build = await tx.builds.get(context.job.target_guid)
        if build is None or build.state != BuildState.STAGING:
            return None
        if build.cell_id is None:
            if not self.directory.warm:
                return Poll(after_seconds=0.5, detail="waiting for the cells to report")
            return await self._dispatch(build)
        return await self._watch(build)

    async def _dispatch(self, build: Build) -> StageOutcome:
        spec = await self._spec(build)
        excluded: set[str] = set()
        reason = "no cell answered"
        for _ in range(MAX_CELL_TRIES):
            cell_id, unplaced = await self._choose(build, frozenset(excluded))
            if cell_id is None:
                await self._fail_and_log(build, INSUFFICIENT_RESOURCES, unplaced or reason)
                return None
            reply = await self.scheduler.rpc(cell_id, StageCommand(staging=spec).wire())
            if reply is not None and reply.accepted:
                await self._assign(build.guid, cell_id)
                log.info("build.dispatched", build_guid=build.guid, cell_id=cell_id)
                return Poll(self.settings.poll_interval_seconds, f"staging on cell {cell_id}")
            excluded.add(cell_id)
            if reply is not None:
                reason = f"cell {cell_id} refused: {reply.detail or reply.reason}"
        await self._fail_and_log(build, STAGING_ERROR, f"No cell accepted the staging ({reason})")
        return None

    async def _choose(
        self, build: Build, excluded: frozenset[str]
    ) -> tuple[str | None, str | None]:
        request = PlacementRequest(
            key=build.guid,
            process_guid=f"staging:{build.app_guid}",
            memory_mb=build.staging_memory_in_mb,
            disk_mb=build.staging_disk_in_mb,
            stack=build.stack or "",
            exclude=excluded,
        )
        views = self.directory.placement_views()
        previous = await self._previous_cell(build)
        warm = [view for view in views if view.cell_id == previous]
        if warm and previous not in excluded:
            chosen = place([request], warm).cell_of(build.guid)
            if chosen is not None:
                return chosen, None
        result = place([request], views)
        if result.unplaced:
            return None, result.unplaced[0].reason
        return result.cell_of(build.guid), None

    async def _previous_cell(self, build: Build) -> str | None:
        """The cell that last staged this app successfully (its buildpack cache is there)."""
        async with self.store.read() as tx:
            page = await tx.builds.page(
                ListQuery(
                    filters={"app_guids": [build.app_guid], "states": [BuildState.STAGED.value]},
                    order_by="created_at",
                    descending=True,
                    per_page=1,
                )
            )
        return page.items[0].cell_id if page.items else None

    async def _spec(self, build: Build) -> StagingSpec:
        async with self.store.read() as tx:
            app = await tx.apps.require(build.app_guid)
            space = await tx.spaces.require(app.space_guid)
            org = await tx.orgs.require(space.org_guid)
        environment = user_environment(app)
        environment["VCAP_APPLICATION"] = json.dumps(
            vcap_application(app, space, org, api_url=self.urls.api_url)
        )
        environment["VCAP_SERVICES"] = "{}"
        environment["CF_STACK"] = build.stack or app.stack
        # The links must outlive the staging (an upload starts at its very end).
        ttl = int(self.settings.timeout_seconds + UPLOAD_GRACE_SECONDS * 2)
        return StagingSpec(
            build_guid=build.guid,
            app_guid=app.guid,
            droplet_guid=build.droplet_guid or "",
            package_url=await self.packages.download_url(build.package_guid),
            droplet_upload_url=await self.urls.url(
                staging_droplet_path(build.guid), "POST", ttl_seconds=ttl
            ),
            failure_url=await self.urls.url(
                staging_failure_path(build.guid), "POST", ttl_seconds=ttl
            ),
            buildpacks=list(build.lifecycle_buildpacks),
            stack=build.stack or app.stack,
            environment=environment,
            memory_mb=build.staging_memory_in_mb,
            disk_mb=build.staging_disk_in_mb,
            timeout_seconds=self.settings.timeout_seconds,
            max_package_bytes=self.packages.limits.max_expanded_bytes,
        )

    async def _assign(self, guid: str, cell_id: str) -> None:
        async with self.store.write() as tx:
            await tx.builds.update(guid, lambda build: dataclasses.replace(build, cell_id=cell_id))

    async def _watch(self, build: Build) -> StageOutcome:
        """The build's cell is staging it: fail it if the cell is lost, no longer lists it,
        or the time limit (plus the upload's grace) has passed."""
        now = self.clock.now()
        accepted_at = build.updated_at.timestamp()
        deadline = accepted_at + self.settings.timeout_seconds + UPLOAD_GRACE_SECONDS
        cell_id = build.cell_id or ""
        record = self.directory.cell(cell_id)
        problem: tuple[str, str] | None = None
        if now.timestamp() > deadline:
            problem = (
                STAGING_TIME_EXPIRED,
                f"Staging took longer than {self.settings.timeout_seconds:g} seconds",
            )
        elif record is None or self.directory.cell_state(record) == CellState.LOST:
            problem = (STAGING_ERROR, f"The cell {cell_id} staging the app was lost")
        elif (
            record.heartbeat.sent_at > accepted_at + HEARTBEAT_MARGIN_SECONDS
            and build.guid not in record.heartbeat.staging
        ):
            problem = (STAGING_ERROR, f"The cell {cell_id} stopped staging the app (restarted?)")
        if problem is None:
            return Poll(self.settings.poll_interval_seconds, f"staging on cell {cell_id}")
        # The upload may have landed between the reads: only a build still STAGING fails.
        async with self.store.read() as tx:
            latest = await tx.builds.get(build.guid)
        if latest is not None and latest.state == BuildState.STAGING:
            await self._fail_and_log(latest, *problem)
        return None

    async def _fail_and_log(self, build: Build, reason: str, detail: str) -> None:
        await self.fail(build.guid, reason, detail)
        await self._log(build.app_guid, f"Staging failed: {detail}", stream="stderr")

    async def _log(self, app_guid: str, line: str, *, stream: str = "stdout") -> None:
        if self.logs is not None:
            await self.logs.publish(
                app_guid, STAGING_SOURCE, line, stream="stderr" if stream == "stderr" else "stdout"
            )
