"""Actual state in the API: process stats, restarting one instance, and the cells."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime

from overcast.bus import subjects
from overcast.bus.base import BusError
from overcast.bus.messages import BadMessage, InstanceReport, InstanceUsage, RpcReply, SetCellState
from overcast.controller.access import Caller, forbid, visible_process
from overcast.controller.base import UseCase
from overcast.controller.cells import CellDirectory, CellRecord
from overcast.controller.events import record_app_event
from overcast.controller.health import CrashInfo, HealthManagement
from overcast.controller.scheduler import Scheduler
from overcast.controller.scheduling import request_schedule
from overcast.models.errors import NotFound, ServiceUnavailable, Unprocessable
from overcast.models.instances import CellState, InstanceState, stats_state
from overcast.models.resources import App, Process, Space
from overcast.store.base import Tx

# How a state ranks when several instances share an index (a replacement next to the old one).
_RANK = {
    InstanceState.RUNNING: 0,
    InstanceState.STARTING: 1,
    InstanceState.CLAIMED: 2,
    InstanceState.CRASHED: 3,
    InstanceState.EVACUATING: 4,
    InstanceState.STOPPING: 5,
}


@dataclass(frozen=True)
class InstanceStat:
    process_type: str
    index: int
    state: str
    host: str | None
    port: int | None
    uptime_seconds: int
    cpu: float
    memory_bytes: int
    disk_bytes: int
    memory_quota_bytes: int
    disk_quota_bytes: int
    details: str | None
    instance_guid: str | None
    cell_id: str | None
    sampled_at: datetime
    # CRASHED only: the index's consecutive crashes, why the last one happened, and when the
    # health manager restarts it (None: at once, or no health manager is reporting).
    crash_count: int | None = None
    crash_reason: str | None = None
    next_restart_at: datetime | None = None


@dataclass(frozen=True)
class CellInfo:
    record: CellRecord
    state: CellState


def _best(reports: list[tuple[str, InstanceReport]], version: str) -> tuple[str, InstanceReport]:
    return min(
        reports,
        key=lambda pair: (pair[1].version != version, _RANK.get(pair[1].state, 9), -pair[1].since),
    )


class Instances(UseCase):
    def __init__(
        self,
        *parts: object,
        directory: CellDirectory,
        scheduler: Scheduler,
        health: HealthManagement | None = None,
    ) -> None:
        super().__init__(*parts)  # type: ignore[arg-type]
        self.directory = directory
        self.scheduler = scheduler
        # Crash restarts waiting for their back-off, for the stats of CRASHED instances.
        self.health = health

    async def _process(self, tx: Tx, caller: Caller, guid: str) -> tuple[Process, App, Space]:
        return await visible_process(tx, caller, guid)

    # --- stats ------------------------------------------------------------------------------

    async def stats(self, caller: Caller, process_guid: str) -> list[InstanceStat]:
        async with self.store.read() as tx:
            process, _, _ = await self._process(tx, caller, process_guid)
        by_index: dict[int, list[tuple[str, InstanceReport]]] = {}
        for placed in self.directory.instances(process_guid=process.guid):
            by_index.setdefault(placed.report.index, []).append((placed.cell_id, placed.report))
        usage = await self.scheduler.usage_of(process.guid) if by_index else {}
        crashes = self.health.crash_info(process.guid) if self.health is not None else {}
        now = self.clock.now()
        stats = []
        for index in range(process.instances):
            reports = by_index.get(index)
            if not reports:
                stats.append(self._down(process, index, now))
                continue
            cell_id, report = _best(reports, process.version)
            stat = _stat(process, cell_id, report, usage.get(report.instance_guid), now)
            if report.state == InstanceState.CRASHED:
                stat = _with_crash(stat, report, crashes.get(index))
            stats.append(stat)
        return stats

    def _down(self, process: Process, index: int, now: datetime) -> InstanceStat:
        return InstanceStat(
            process_type=process.type,
            index=index,
            state="DOWN",
            host=None,
            port=None,
            uptime_seconds=0,
            cpu=0.0,
            memory_bytes=0,
            disk_bytes=0,
            memory_quota_bytes=process.memory_in_mb * 1024 * 1024,
            disk_quota_bytes=process.disk_in_mb * 1024 * 1024,
            details=process.placement_error,
            instance_guid=None,
            cell_id=None,
            sampled_at=now,
        )

    # --- restart one instance ---------------------------------------------------------------

    async def restart_instance(self, caller: Caller, process_guid: str, index: int) -> None:
        """Stop the instance at `index`; the scheduling run that follows starts a new one."""
        async with self.store.read() as tx:
            process, app, space = await self._process(tx, caller, process_guid)
            if not caller.permissions.can_develop_in_space(space.guid):
                raise forbid()
        if not 0 <= index < process.instances:
            raise NotFound("Instance not found")
        for placed in self.directory.instances(process_guid=process.guid):
            report = placed.report
            if report.index == index and report.state != InstanceState.STOPPING:
                await self.scheduler.stop_instance(
                    placed.cell_id, report.instance_guid, report.version, "restart requested"
                )
        async with self.store.write() as tx:
            await request_schedule(tx, self.engine, app, process)
            await record_app_event(
                tx,
                self.clock,
                caller,
                "audit.app.process.restart_instance",
                app,
                space,
                process_guid=process.guid,
                process_type=process.type,
                process_index=index,
            )
        self.engine.wake()

    # --- cells ------------------------------------------------------------------------------

    def cells(self, caller: Caller) -> list[CellInfo]:
        if not caller.admin:
            raise forbid()
        return [
            CellInfo(record, self.directory.cell_state(record)) for record in self.directory.cells()
        ]

    def cell(self, caller: Caller, cell_id: str) -> CellInfo:
        if not caller.admin:
            raise forbid()
        record = self.directory.cell(cell_id)
        if record is None:
            raise NotFound.of("Cell")
        return CellInfo(record, self.directory.cell_state(record))

    async def set_cell_state(self, caller: Caller, cell_id: str, state: str) -> CellInfo:
        """DISABLED: keeps running what it has, takes nothing new. The cell itself holds the
        state (it is the writer of its own actual state) and reports it in heartbeats."""
        self.cell(caller, cell_id)
        if state not in (CellState.ENABLED, CellState.DISABLED):
            raise Unprocessable("State must be ENABLED or DISABLED")
        command = SetCellState(state=state)
        try:
            message = await self.scheduler.bus.request(
                subjects.cell_rpc(cell_id), command.wire(), timeout=self.scheduler.rpc_timeout
            )
            reply = RpcReply.parse(message.data)
        except (BusError, BadMessage) as error:
            raise ServiceUnavailable(f"Cell {cell_id} did not answer: {error}") from None
        if not reply.accepted:
            raise Unprocessable(f"Cell {cell_id} refused: {reply.detail or reply.reason}")
        record = self.directory.cell(cell_id)
        assert record is not None
        record.heartbeat = record.heartbeat.model_copy(update={"state": CellState(state)})
        return CellInfo(record, self.directory.cell_state(record))


def _with_crash(stat: InstanceStat, report: InstanceReport, info: CrashInfo | None) -> InstanceStat:
    """A CRASHED instance's stats with its crash count and reason, and when the health
    manager restarts it if it waits for this very crash record."""
    waiting = info is not None and info.instance_guid == report.instance_guid
    restart_at = info.next_restart_at if info is not None and waiting else None
    return dataclasses.replace(
        stat,
        crash_count=report.crash_count,
        crash_reason=report.reason,
        next_restart_at=None if restart_at is None else datetime.fromtimestamp(restart_at, UTC),
    )


def _stat(
    process: Process,
    cell_id: str,
    report: InstanceReport,
    usage: InstanceUsage | None,
    now: datetime,
) -> InstanceStat:
    state = stats_state(report.state)
    running_since = report.since if report.state == InstanceState.RUNNING else None
    uptime = max(0, int(now.timestamp() - running_since)) if running_since else 0
    return InstanceStat(
        process_type=process.type,
        index=report.index,
        state=state,
        host=report.host,
        port=report.port,
        uptime_seconds=int(usage.uptime_seconds) if usage else uptime,
        cpu=usage.cpu if usage else 0.0,
        memory_bytes=usage.memory_bytes if usage else 0,
        disk_bytes=usage.disk_bytes if usage else 0,
        memory_quota_bytes=report.memory_mb * 1024 * 1024,
        disk_quota_bytes=report.disk_mb * 1024 * 1024,
        details=(report.detail or report.reason) if state == "CRASHED" else None,
        instance_guid=report.instance_guid,
        cell_id=cell_id,
        sampled_at=now,
    )
