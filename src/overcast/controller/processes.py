"""Processes: the runnable parts of an app, their command, health check and scale."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from overcast.controller.access import (
    Caller,
    forbid,
    restrict,
    visible_app,
    visible_process,
    visible_space_guids,
)
from overcast.controller.base import MetadataPatch, UseCase
from overcast.controller.events import changes_request, record_app_event
from overcast.controller.logs import SOURCE_API, LogBuffer, change_summary
from overcast.controller.scheduling import request_schedule
from overcast.core.ids import new_guid
from overcast.models.errors import NotFound, Unprocessable
from overcast.models.metadata import patch_metadata
from overcast.models.query import ListQuery, Page
from overcast.models.resources import HealthCheck, HealthCheckType, Process, Space
from overcast.store.base import Tx

MAX_INSTANCES = 2000
MAX_MEMORY_MB = 1024 * 1024
MAX_DISK_MB = 1024 * 1024


@dataclass(frozen=True)
class Scale:
    instances: int | None = None
    memory_in_mb: int | None = None
    disk_in_mb: int | None = None
    log_rate_limit_in_bytes_per_second: int | None = None


@dataclass(frozen=True)
class HealthCheckChange:
    type: str | None = None
    endpoint: str | None = None
    timeout: int | None = None
    invocation_timeout: int | None = None
    interval: int | None = None


UNSET = object()


@dataclass(frozen=True)
class ProcessChanges:
    # `command` distinguishes "not given" (UNSET) from null (back to the droplet's default).
    command: object = UNSET
    health_check: HealthCheckChange | None = None
    labels: MetadataPatch = None
    annotations: MetadataPatch = None


def check_scale(scale: Scale) -> None:
    if scale.instances is not None and not 0 <= scale.instances <= MAX_INSTANCES:
        raise Unprocessable(f"Instances must be between 0 and {MAX_INSTANCES}")
    if scale.memory_in_mb is not None and not 1 <= scale.memory_in_mb <= MAX_MEMORY_MB:
        raise Unprocessable("Memory in mb must be greater than 0 (and at most 1 TB)")
    if scale.disk_in_mb is not None and not 1 <= scale.disk_in_mb <= MAX_DISK_MB:
        raise Unprocessable("Disk in mb must be greater than 0 (and at most 1 TB)")
    limit = scale.log_rate_limit_in_bytes_per_second
    if limit is not None and limit < -1:
        raise Unprocessable("Log rate limit must be -1 (unlimited) or more")


def health_check_after(current: HealthCheck, change: HealthCheckChange) -> HealthCheck:
    try:
        kind = HealthCheckType(change.type) if change.type is not None else current.type
    except ValueError:
        raise Unprocessable("Health check type must be port, process or http") from None
    for name in ("timeout", "invocation_timeout", "interval"):
        value = getattr(change, name)
        if value is not None and not 1 <= value <= 86400:
            raise Unprocessable(f"Health check {name} must be between 1 and 86400 seconds")
    endpoint = change.endpoint if change.endpoint is not None else current.endpoint
    if kind != HealthCheckType.HTTP:
        if change.endpoint is not None:
            raise Unprocessable("Health check endpoint can only be set for type http")
        endpoint = None
    if endpoint is not None and not endpoint.startswith("/"):
        raise Unprocessable("Health check endpoint must be a path starting with /")
    return HealthCheck(
        type=kind,
        endpoint=endpoint,
        timeout=change.timeout if change.timeout is not None else current.timeout,
        invocation_timeout=(
            change.invocation_timeout
            if change.invocation_timeout is not None
            else current.invocation_timeout
        ),
        interval=change.interval if change.interval is not None else current.interval,
    )


def _process_request(changes: ProcessChanges) -> dict[str, object]:
    request: dict[str, object] = {}
    if changes.command is not UNSET:
        request["command"] = changes.command
    if changes.health_check is not None:
        request["health_check"] = changes_request(changes.health_check)
    if changes.labels or changes.annotations:
        request["metadata"] = {"labels": changes.labels, "annotations": changes.annotations}
    return request


def _process_line(process: Process, changes: dict[str, object]) -> str:
    return (
        f'Updated process "{process.type}" of app with guid {process.app_guid} '
        f"({change_summary(changes)})"
    )


def _resizes(current: Process, scale: Scale) -> bool:
    return (scale.memory_in_mb is not None and scale.memory_in_mb != current.memory_in_mb) or (
        scale.disk_in_mb is not None and scale.disk_in_mb != current.disk_in_mb
    )


class Processes(UseCase):
    # Where the `API` lines about changes go (set by the Controller).
    logs: LogBuffer | None = None

    async def _log_change(self, process: Process, changes: dict[str, object]) -> None:
        if self.logs is not None:
            await self.logs.publish(process.app_guid, SOURCE_API, _process_line(process, changes))

    async def _visible(self, tx: Tx, caller: Caller, guid: str) -> tuple[Process, Space]:
        process, _, space = await visible_process(tx, caller, guid)
        return process, space

    async def _writable(self, tx: Tx, caller: Caller, guid: str) -> tuple[Process, Space]:
        process, space = await self._visible(tx, caller, guid)
        if not caller.permissions.can_develop_in_space(space.guid):
            raise forbid()
        return process, space

    async def get(self, caller: Caller, guid: str) -> Process:
        async with self.store.read() as tx:
            process, _ = await self._visible(tx, caller, guid)
            return process

    async def by_type(self, caller: Caller, app_guid: str, process_type: str) -> Process:
        async with self.store.read() as tx:
            await visible_app(tx, caller, app_guid)
            process = await tx.processes.by_type(app_guid, process_type)
        if process is None:
            raise NotFound.of("Process")
        return process

    async def page(self, caller: Caller, query: ListQuery) -> Page[Process]:
        async with self.store.read() as tx:
            allowed = await visible_space_guids(tx, caller)
            filters = restrict(query.filters, "space_guids", allowed)
            return await tx.processes.page(dataclasses.replace(query, filters=filters))

    async def of_app(self, caller: Caller, app_guid: str, query: ListQuery) -> Page[Process]:
        async with self.store.read() as tx:
            await visible_app(tx, caller, app_guid)
            filters = {**query.filters, "app_guids": [app_guid]}
            return await tx.processes.page(dataclasses.replace(query, filters=filters))

    async def update(self, caller: Caller, guid: str, changes: ProcessChanges) -> Process:
        if isinstance(changes.command, str) and not changes.command.strip():
            raise Unprocessable("Command must be between 1 and 4096 characters")
        if isinstance(changes.command, str) and len(changes.command) > 4096:
            raise Unprocessable("Command must be between 1 and 4096 characters")
        async with self.store.write() as tx:
            _, space = await self._writable(tx, caller, guid)

            def apply(current: Process) -> Process:
                command = current.command if changes.command is UNSET else changes.command
                return dataclasses.replace(
                    current,
                    command=command if isinstance(command, str) else None,
                    health_check=(
                        current.health_check
                        if changes.health_check is None
                        else health_check_after(current.health_check, changes.health_check)
                    ),
                    metadata=patch_metadata(current.metadata, changes.labels, changes.annotations),
                )

            _, after = await tx.processes.update(guid, apply)
            app = await tx.apps.require(after.app_guid)
            request = _process_request(changes)
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.process.update",
                app,
                space,
                process_guid=after.guid,
                process_type=after.type,
                request=request,
            )
        logged = dict(request)
        if "command" in logged:
            # A command may hold credentials: CF hides it the same way.
            logged["command"] = "[PRIVATE DATA HIDDEN]"
        if changes.labels or changes.annotations:
            logged["metadata"] = {
                "labels": sorted(changes.labels or ()),
                "annotations": sorted(changes.annotations or ()),
            }
        await self._log_change(after, logged)
        return after

    async def scale(self, caller: Caller, guid: str, scale: Scale) -> Process:
        check_scale(scale)
        async with self.store.write() as tx:
            _, space = await self._writable(tx, caller, guid)

            def apply(current: Process) -> Process:
                changes: dict[str, object] = {
                    k: v for k, v in dataclasses.asdict(scale).items() if v is not None
                }
                if _resizes(current, scale):
                    # New limits need new instances (as `cf scale -m` restarts the app).
                    changes["version"] = new_guid()
                return dataclasses.replace(current, **changes)  # type: ignore[arg-type]

            _, after = await tx.processes.update(guid, apply)
            app = await tx.apps.require(after.app_guid)
            await request_schedule(tx, self.engine, app, after)
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.process.scale",
                app,
                space,
                process_guid=after.guid,
                process_type=after.type,
                request=changes_request(scale),
            )
        self.engine.wake()
        await self._log_change(after, changes_request(scale))
        return after
