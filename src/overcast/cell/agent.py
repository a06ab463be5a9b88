"""The cell agent (DESIGN.md sections 4 and 8).

It is the only writer of its instances' actual state: it takes `start`/`stop`/`set_state`/
`stats` on `cell.<id>.rpc`, runs instances through a runtime, publishes every state change on
`instance.event`, the instances' output on `logs.<app>`, and the whole table on
`cell.heartbeat`. The table is on disk, so a restarted agent re-adopts what still runs.

Running apps come first: nothing here stops an instance because the bus or the controller is
unreachable; a publish that fails is logged and the next heartbeat repeats the truth."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from overcast.bus.base import Bus, Message, Subscription
from overcast.bus.messages import (
    BadMessage,
    Heartbeat,
    InstanceEvent,
    InstanceSpec,
    InstanceStatsRequest,
    InstanceUsage,
    LogLine,
    Resources,
    RpcReply,
    SetCellState,
    SetRoutes,
    StageCommand,
    StagingSpec,
    StartInstance,
    StatsReply,
    StopInstance,
    Wire,
    parse_command,
)
from overcast.bus.subjects import CELL_DISCOVER, CELL_HEARTBEAT, INSTANCE_EVENT, app_logs, cell_rpc
from overcast.cell.decisions import CellProfile, decide_stage, decide_start, decide_stop, used_by
from overcast.cell.disk import directory_size
from overcast.cell.logs import FileTail
from overcast.cell.ports import PortAllocator
from overcast.cell.probes import Prober
from overcast.cell.process import ProcessRuntime
from overcast.cell.procfs import total_memory_bytes
from overcast.cell.routes import RouteRegistrar
from overcast.cell.runtime import (
    STREAMS,
    ExitStatus,
    PrepareError,
    Runtime,
    SpawnError,
    Stream,
    Usage,
    log_path,
)
from overcast.cell.staging import Stager
from overcast.cell.table import (
    TABLE_FILE,
    CellTable,
    InstanceRecord,
    load_cell_id,
    read_table,
    write_table,
)
from overcast.core.clock import Clock, SystemClock
from overcast.core.logging import get_logger
from overcast.core.settings import CellSection
from overcast.models.errors import IllegalTransition
from overcast.models.instances import (
    CELL_TRANSITIONS,
    INSTANCE_TRANSITIONS,
    LIVE_STATES,
    CellState,
    ExitReason,
    InstanceState,
    RejectReason,
)
from overcast.models.lifecycle import transition

log = get_logger(__name__)

MIB = 1024 * 1024
# How often the instances' log files are read.
TAIL_INTERVAL_SECONDS = 0.15
# A running instance's exit is noticed at least this often, whatever its probe interval.
EXIT_POLL_SECONDS = 0.2
# An instance directory's size is measured at most this often (stats).
DISK_USAGE_TTL_SECONDS = 5.0
# Two CPU samples closer than this give a noisy fraction: the previous one is reported.
CPU_MIN_SAMPLE_SECONDS = 1.0
CELL_SOURCE = "CELL"
STAGING_SOURCE = "STG"
# States in which the instance's process may run.
_PROCESS_STATES = frozenset(
    {InstanceState.STARTING, InstanceState.RUNNING, InstanceState.EVACUATING}
)


# The first readiness probes come this soon after the spawn, then back off to the interval.
READY_FIRST_PAUSE_SECONDS = 0.025
# ...and the longest pause between readiness probes: an app that takes a second to boot (Flask)
# is seen ready within a quarter of a second of binding, not after a doubled wait of seconds.
READY_MAX_PAUSE_SECONDS = 0.25


class CellAgent:
    """One cell. Build it, `await start()`, and `await stop(...)` when the process exits."""

    def __init__(
        self,
        settings: CellSection,
        *,
        bus: Bus,
        work_dir: Path,
        runtime: Runtime | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings
        self._bus = bus
        self._work_dir = work_dir
        self._clock = clock or SystemClock()
        work_dir.mkdir(parents=True, exist_ok=True)
        self._runtime: Runtime = runtime or ProcessRuntime(work_dir)
        self._cell_id = load_cell_id(work_dir, settings.id)
        self._table_path = work_dir / TABLE_FILE
        self._table = CellTable(cell_id=self._cell_id)
        self._ports = PortAllocator(
            settings.host, settings.port_range_start, settings.port_range_end
        )
        self._profile = CellProfile(
            stacks=frozenset(settings.stacks),
            tags=frozenset(settings.tags),
            capacity=Resources(memory_mb=0, disk_mb=0, containers=settings.containers),
        )
        self._prober: Prober | None = None
        self._subscriptions: list[Subscription] = []
        self._background: list[asyncio.Task[None]] = []
        # Per instance: its supervising task, a stop in progress, its log tails.
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stops: dict[str, asyncio.Task[None]] = {}
        self._tails: dict[str, dict[Stream, FileTail]] = {}
        self._cpu: dict[str, tuple[float, float, float]] = {}
        self._disk: dict[str, tuple[float, int]] = {}
        self._started_at = 0.0
        self._running = False
        self._stager = Stager(
            settings, work_dir, log_sink=self._staging_log, on_change=self._staging_changed
        )
        self._routes = RouteRegistrar(
            bus,
            host=settings.host,
            cell_id=self._cell_id,
            records=lambda: self._table.instances.values(),
        )

    # --- public ------------------------------------------------------------------------------

    @property
    def cell_id(self) -> str:
        return self._cell_id

    @property
    def work_dir(self) -> Path:
        return self._work_dir

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def seq(self) -> int:
        return self._table.seq

    @property
    def state(self) -> CellState:
        return self._table.state

    def instance_dir(self, instance_guid: str) -> Path:
        return self._work_dir / "instances" / instance_guid

    def instances(self) -> list[InstanceRecord]:
        """The table's records (copies: the agent alone changes them)."""
        return [record.model_copy(deep=True) for record in self._table.instances.values()]

    def heartbeat(self) -> Heartbeat:
        host = self._settings.host
        return Heartbeat(
            cell_id=self._cell_id,
            zone=self._settings.zone,
            state=self._table.state,
            host=host,
            stacks=list(self._settings.stacks),
            tags=list(self._settings.tags),
            capacity=self._profile.capacity,
            allocated=used_by(self._table, self._profile),
            instances=[record.report(host) for record in self._table.instances.values()],
            seq=self._table.seq,
            interval_seconds=self._settings.heartbeat_interval_seconds,
            sent_at=self._now(),
            started_at=self._started_at,
            staging=self._stager.guids(),
        )

    async def start(self) -> None:
        """Load the table, re-adopt what still runs, answer commands, heartbeat at once."""
        if self._running:
            return
        saved = read_table(self._table_path)
        if saved is not None:
            saved.cell_id = self._cell_id
            self._table = saved
        self._profile = CellProfile(
            stacks=frozenset(self._settings.stacks),
            tags=frozenset(self._settings.tags),
            capacity=self._capacity(),
        )
        self._prober = Prober()
        self._started_at = self._now()
        self._running = True
        self._readopt()
        self._save()
        self._subscriptions = [
            await self._bus.subscribe(cell_rpc(self._cell_id), self._on_rpc),
            await self._bus.subscribe(CELL_DISCOVER, self._on_discover),
        ]
        loop = asyncio.get_running_loop()
        self._background = [
            loop.create_task(self._heartbeat_loop(), name=f"cell-heartbeat:{self._cell_id}"),
            loop.create_task(self._tail_loop(), name=f"cell-logs:{self._cell_id}"),
        ]
        await self._routes.start()
        log.info(
            "cell.started",
            cell_id=self._cell_id,
            instances=len(self._table.instances),
            seq=self._table.seq,
        )

    async def register_routes(self) -> int:
        """Register every RUNNING instance's routes now; how many registrations were sent."""
        return await self._routes.register_all()

    async def stop(self, *, stop_instances: bool | None = None) -> None:
        """Stop answering and heartbeating. `stop_instances` (default: the settings'
        `stop_instances_on_exit`) stops every instance (micro cloud); otherwise they keep
        running for the next cell process to re-adopt."""
        if not self._running:
            return
        self._running = False
        if stop_instances is None:
            stop_instances = self._settings.stop_instances_on_exit
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions = []
        heartbeat, tails = self._background
        await _cancel(heartbeat)
        await self._routes.stop()
        await self._stager.stop()
        if stop_instances:
            for record in list(self._table.instances.values()):
                self._begin_stop(record, ExitReason.STOPPED.value)
        else:
            await asyncio.gather(*(_cancel(task) for task in list(self._tasks.values())))
        await asyncio.gather(*list(self._stops.values()), return_exceptions=True)
        await _cancel(tails)
        self._background = []
        self._save()
        if self._prober is not None:
            await self._prober.close()
        await self._runtime.close()
        log.info("cell.stopped", cell_id=self._cell_id, stopped_instances=stop_instances)

    # --- bus handlers ------------------------------------------------------------------------

    async def _on_rpc(self, message: Message) -> None:
        if not self._running:
            return
        try:
            command = parse_command(message.data)
        except BadMessage as error:
            await self._respond(message, self._reply(False, RejectReason.INVALID, str(error)))
            return
        if isinstance(command, StartInstance):
            await self._on_start(message, command.instance)
        elif isinstance(command, StopInstance):
            await self._respond(message, self._on_stop(command))
        elif isinstance(command, SetCellState):
            await self._respond(message, self._on_set_state(command))
            await self._send_heartbeat()
        elif isinstance(command, InstanceStatsRequest):
            await self._respond(message, await self._stats(command))
        elif isinstance(command, StageCommand):
            await self._on_stage(message, command.staging)
        elif isinstance(command, SetRoutes):
            await self._respond(message, self._reply(True))
            await self._on_set_routes(command)

    async def _on_discover(self, _message: Message) -> None:
        if self._running:
            await self._send_heartbeat()

    async def _on_start(self, message: Message, spec: InstanceSpec) -> None:
        decision = decide_start(spec, self._table, self._profile)
        if not decision.accepted:
            log.info(
                "cell.start_rejected",
                instance_guid=spec.instance_guid,
                reason=decision.reason,
                detail=decision.detail,
            )
            await self._respond(message, self._reply(False, decision.reason, decision.detail))
            return
        if decision.record is not None:
            # A repeat (or a twin of a live instance): report what is here, start nothing.
            await self._respond(message, self._reply(True, record=decision.record))
            return
        record = InstanceRecord(
            spec=spec,
            state=InstanceState.UNCLAIMED,
            since=self._now(),
            crash_count=spec.crash_count,
        )
        self._table.instances[spec.instance_guid] = record
        before = self._change(record, InstanceState.CLAIMED)
        await self._respond(message, self._reply(True, record=record))
        await self._announce(record, before)
        self._supervise(record, self._run_instance(record))

    async def _on_stage(self, message: Message, spec: StagingSpec) -> None:
        self._profile = dataclasses.replace(self._profile, staging=self._stager.allocated())
        decision = decide_stage(
            spec,
            self._table,
            self._profile,
            in_progress=self._stager.is_staging(spec.build_guid),
        )
        if not decision.accepted:
            log.info(
                "cell.stage_rejected",
                build_guid=spec.build_guid,
                reason=decision.reason,
                detail=decision.detail,
            )
            await self._respond(message, self._reply(False, decision.reason, decision.detail))
            return
        if not self._stager.is_staging(spec.build_guid):
            log.info("cell.staging", build_guid=spec.build_guid, app_guid=spec.app_guid)
            self._stager.begin(spec)
            self._profile = dataclasses.replace(self._profile, staging=self._stager.allocated())
        await self._respond(message, self._reply(True))
        await self._send_heartbeat()

    async def _on_set_routes(self, command: SetRoutes) -> None:
        """A process's routes changed: its instances here take the new list; the running
        ones register it at once and withdraw what left it."""
        for record in list(self._table.instances.values()):
            spec = record.spec
            if spec.process_guid != command.process_guid or record.state not in LIVE_STATES:
                continue
            gone = [uri for uri in spec.routes if uri not in command.routes]
            if spec.routes == command.routes and spec.route_options == command.route_options:
                continue
            record.spec = spec.model_copy(
                update={"routes": list(command.routes), "route_options": command.route_options}
            )
            self._table.stamp(record)
            self._save()
            if record.state == InstanceState.RUNNING:
                if gone:
                    withdrawn = record.model_copy(update={"spec": spec})
                    await self._routes.unregister(withdrawn, gone)
                await self._routes.register(record)

    async def _staging_log(self, app_guid: str, line: str, stream: str) -> None:
        try:
            subject = app_logs(app_guid)
        except ValueError:
            return
        payload = LogLine(
            app_guid=app_guid,
            source=STAGING_SOURCE,
            stream="stderr" if stream == "stderr" else "stdout",
            line=line,
            timestamp=time.time_ns(),
        )
        await self._publish(subject, payload)

    async def _staging_changed(self) -> None:
        self._profile = dataclasses.replace(self._profile, staging=self._stager.allocated())
        if self._running:
            await self._send_heartbeat()

    def _on_stop(self, command: StopInstance) -> RpcReply:
        decision = decide_stop(command, self._table)
        if not decision.accepted:
            return self._reply(False, decision.reason, decision.detail)
        if decision.record is not None:
            self._begin_stop(decision.record, command.reason)
        return self._reply(True, record=decision.record)

    def _on_set_state(self, command: SetCellState) -> RpcReply:
        target = CellState(command.state)
        try:
            transition(CELL_TRANSITIONS, self._table.state, target, what="cell")
        except IllegalTransition as error:
            return self._reply(False, RejectReason.INVALID, error.detail)
        if target != self._table.state:
            log.info("cell.state_changed", before=self._table.state, after=target)
            self._table.state = target
            self._table.bump()
            self._save()
        return self._reply(True)

    def _reply(
        self,
        accepted: bool,
        reason: RejectReason | None = None,
        detail: str | None = None,
        *,
        record: InstanceRecord | None = None,
    ) -> RpcReply:
        return RpcReply(
            accepted=accepted,
            reason=reason,
            detail=detail,
            cell_id=self._cell_id,
            seq=self._table.seq,
            instance=record.report(self._settings.host) if record is not None else None,
        )

    # --- an instance's life ------------------------------------------------------------------

    def _supervise(self, record: InstanceRecord, work: Coroutine[Any, Any, None]) -> None:
        guid = record.guid
        task = asyncio.get_running_loop().create_task(work, name=f"cell-instance:{guid}")
        self._tasks[guid] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(guid) is done:
                del self._tasks[guid]

        task.add_done_callback(forget)

    async def _run_instance(self, record: InstanceRecord) -> None:
        try:
            if record.state == InstanceState.CLAIMED and not await self._launch(record):
                return
            if record.state == InstanceState.STARTING and not await self._await_ready(record):
                return
            if record.state in (InstanceState.RUNNING, InstanceState.EVACUATING):
                await self._watch(record)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("cell.supervision_failed", instance_guid=record.guid)
            if record.state in (InstanceState.CLAIMED, *_PROCESS_STATES):
                await self._crash(record, ExitReason.CRASHED, "the cell failed to supervise it")

    async def _launch(self, record: InstanceRecord) -> bool:
        """CLAIMED -> STARTING: fetch and unpack the droplet, start the command."""
        spec = record.spec
        directory = self.instance_dir(record.guid)
        await self._cell_log(
            record, f"Cell {self._cell_id} creating container for instance {record.guid}"
        )
        # A CLAIMED instance re-done after a cell restart starts from an empty directory.
        await self._runtime.remove(directory)
        await self._cell_log(record, "Downloading droplet...")
        try:
            await self._runtime.prepare(spec, directory)
        except PrepareError as error:
            await self._cell_log(record, f"Downloading droplet failed: {error}", "stderr")
            await self._crash(record, ExitReason.DOWNLOAD_FAILED, str(error))
            return False
        await self._cell_log(record, "Downloaded droplet")
        port = self._ports.allocate(self._ports_taken())
        if port is None:
            detail = (
                f"no free port in {self._settings.port_range_start}-{self._settings.port_range_end}"
            )
            await self._crash(record, ExitReason.CRASHED, detail)
            return False
        try:
            handle = self._runtime.spawn(spec, directory, host=self._settings.host, port=port)
        except SpawnError as error:
            await self._crash(record, ExitReason.CRASHED, str(error))
            return False
        # No await between the spawn and this change: a cancelled task never loses a process.
        self._open_tails(record, fresh=True)
        before = self._change(
            record,
            InstanceState.STARTING,
            port=port,
            pid=handle.pid,
            pid_start_time=handle.start_time,
        )
        await self._announce(record, before)
        await self._cell_log(
            record, f"Starting app instance (index {spec.index}) with guid {record.guid}"
        )
        return True

    async def _await_ready(self, record: InstanceRecord) -> bool:
        """STARTING -> RUNNING once a probe passes, or CRASHED."""
        check = record.spec.health_check
        deadline = self._clock.monotonic() + check.timeout_seconds
        # Most apps bind within a few hundred ms: probe fast at first, then at most every
        # READY_MAX_PAUSE_SECONDS, so no app is held back long after it binds (push time is
        # measured in this).
        pause = min(READY_FIRST_PAUSE_SECONDS, check.interval_seconds)
        while True:
            if await self._exited(record):
                return False
            failure = await self._probe(record)
            if failure is None:
                before = self._change(record, InstanceState.RUNNING, running_since=self._now())
                await self._announce(record, before)
                await self._cell_log(record, "Container became healthy")
                return True
            if self._clock.monotonic() >= deadline:
                detail = (
                    f"not ready within {check.timeout_seconds:g}s "
                    f"({check.type} health check: {failure})"
                )
                await self._cell_log(record, f"Instance failed to start: {detail}", "stderr")
                await self._crash(record, ExitReason.START_TIMEOUT, detail)
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, check.interval_seconds, READY_MAX_PAUSE_SECONDS)

    async def _watch(self, record: InstanceRecord) -> None:
        """While RUNNING: notice an exit, and probe liveness."""
        check = record.spec.health_check
        tick = min(check.interval_seconds, EXIT_POLL_SECONDS)
        next_probe = self._clock.monotonic() + check.interval_seconds
        while True:
            await asyncio.sleep(tick)
            if await self._exited(record):
                return
            if self._clock.monotonic() < next_probe:
                continue
            failure = await self._probe(record)
            next_probe = self._clock.monotonic() + check.interval_seconds
            if failure is not None and not await self._exited(record):
                detail = f"health check failed: {failure}"
                await self._cell_log(record, f"Instance became unhealthy: {detail}", "stderr")
                await self._crash(record, ExitReason.CRASHED, detail)
                return

    async def _probe(self, record: InstanceRecord) -> str | None:
        assert self._prober is not None
        return await self._prober.probe(record.spec.health_check, self._settings.host, record.port)

    async def _exited(self, record: InstanceRecord) -> bool:
        """If the instance's process ended (nobody asked it to), record the crash."""
        handle = record.handle
        status = self._runtime.poll(handle) if handle is not None else ExitStatus()
        if status is None:
            return False
        await self._crash(
            record, ExitReason.CRASHED, status.describe(), status=status, summary=True
        )
        return True

    async def _crash(
        self,
        record: InstanceRecord,
        reason: ExitReason,
        detail: str,
        *,
        status: ExitStatus | None = None,
        summary: bool = False,
    ) -> None:
        """-> CRASHED: free its resources and directory, keep its record until stopped."""
        if record.state == InstanceState.RUNNING:
            await self._routes.unregister(record)  # no more traffic before it is killed
        handle = record.handle
        if handle is not None:
            # Unready or unhealthy, or gone while what it forked lives on: take it all.
            await self._runtime.kill(handle)
        await self._finish_logs(record)
        before = self._change(
            record,
            InstanceState.CRASHED,
            reason=reason.value,
            detail=detail,
            exit_status=status.status if status is not None else None,
            crash_count=record.crash_count_after_crash(self._now()),
            port=None,
            pid=None,
            pid_start_time=None,
            running_since=None,
        )
        log.warning(
            "cell.instance_crashed", instance_guid=record.guid, reason=reason, detail=detail
        )
        await self._announce(record, before)
        if summary and status is not None:
            await self._cell_log(record, status.summary())
        await self._runtime.remove(self.instance_dir(record.guid))

    def _begin_stop(self, record: InstanceRecord, reason: str) -> None:
        guid = record.guid
        if guid in self._stops:
            return
        task = asyncio.get_running_loop().create_task(
            self._stop_instance(record, reason), name=f"cell-stop:{guid}"
        )
        self._stops[guid] = task
        task.add_done_callback(lambda _done: self._stops.pop(guid, None))

    async def _stop_instance(self, record: InstanceRecord, reason: str) -> None:
        """-> STOPPING -> STOPPED, then forgotten (its guid kept as a tombstone)."""
        task = self._tasks.pop(record.guid, None)
        if task is not None:
            await _cancel(task)
        try:
            if record.state in (
                InstanceState.CLAIMED,
                InstanceState.STARTING,
                InstanceState.RUNNING,
            ):
                before = self._change(record, InstanceState.STOPPING, reason=reason)
                await self._announce(record, before)
                await self._cell_log(record, f"Stopping instance {record.guid}")
            handle = record.handle
            if handle is not None and record.state != InstanceState.CRASHED:
                status = await self._runtime.stop(handle, grace=self._settings.stop_grace_seconds)
                if status is not None and status.status is not None:
                    record.exit_status = status.status
            await self._finish_logs(record)
            await self._runtime.remove(self.instance_dir(record.guid))
        except Exception:
            log.exception("cell.stop_failed", instance_guid=record.guid)
        before = self._change(
            record, InstanceState.STOPPED, port=None, pid=None, pid_start_time=None
        )
        await self._announce(record, before)
        self._forget(record)

    def _forget(self, record: InstanceRecord) -> None:
        guid = record.guid
        self._table.forget(guid)
        self._tails.pop(guid, None)
        self._cpu.pop(guid, None)
        self._disk.pop(guid, None)
        self._save()

    # --- re-adoption -------------------------------------------------------------------------

    def _readopt(self) -> None:
        """Take over the instances of the saved table (DESIGN.md section 8)."""
        for record in list(self._table.instances.values()):
            state = record.state
            if state == InstanceState.CLAIMED:
                self._supervise(record, self._run_instance(record))
            elif state in _PROCESS_STATES:
                self._open_tails(record, fresh=False)
                handle = record.handle
                if handle is not None and self._runtime.adopt(handle):
                    log.info("cell.instance_adopted", instance_guid=record.guid, pid=handle.pid)
                    self._supervise(record, self._run_instance(record))
                else:
                    self._supervise(record, self._lost(record))
            elif state == InstanceState.STOPPING:
                self._begin_stop(record, record.reason or ExitReason.STOPPED.value)
            elif state == InstanceState.CRASHED:
                self._supervise(record, self._runtime.remove(self.instance_dir(record.guid)))

    async def _lost(self, record: InstanceRecord) -> None:
        handle = record.handle
        status = self._runtime.poll(handle) if handle is not None else None
        detail = "the instance's process was gone when the cell restarted"
        if status is not None and status.status is not None:
            detail = f"{detail} ({status.describe()})"
        await self._crash(record, ExitReason.CELL_RESTARTED, detail, status=status)

    # --- table -------------------------------------------------------------------------------

    def _change(
        self, record: InstanceRecord, target: InstanceState, **fields: Any
    ) -> InstanceState:
        """Move an instance along its lifecycle (refusing an illegal edge), stamp it with the
        next seq and persist the table. Returns the state it left."""
        before = record.state
        transition(INSTANCE_TRANSITIONS, before, target, what=f"instance {record.guid}")
        for name, value in fields.items():
            setattr(record, name, value)
        record.state = target
        record.since = self._now()
        self._table.stamp(record)
        self._save()
        return before

    def _save(self) -> None:
        for guid, tails in self._tails.items():
            record = self._table.instances.get(guid)
            if record is not None:
                record.log_offsets = {stream: tail.offset for stream, tail in tails.items()}
        try:
            write_table(self._table_path, self._table)
        except OSError:
            # The instances run on; the next change tries again.
            log.exception("cell.table_write_failed", path=str(self._table_path))

    def _ports_taken(self) -> set[int]:
        return {
            record.port
            for record in self._table.instances.values()
            if record.allocating and record.port is not None
        }

    def _capacity(self) -> Resources:
        memory = self._settings.memory_mb or total_memory_bytes() // MIB
        disk = self._settings.disk_mb or shutil.disk_usage(self._work_dir).free // MIB
        return Resources(memory_mb=memory, disk_mb=disk, containers=self._settings.containers)

    # --- publishing --------------------------------------------------------------------------

    async def _publish(self, subject: str, payload: Wire) -> None:
        try:
            await self._bus.publish(subject, payload.wire())
        except Exception as error:
            log.warning("cell.publish_failed", subject=subject, error=type(error).__name__)

    async def _respond(self, message: Message, payload: Wire) -> None:
        try:
            await self._bus.respond(message, payload.wire())
        except Exception as error:
            log.warning("cell.reply_failed", error=type(error).__name__)

    async def _announce(self, record: InstanceRecord, before: InstanceState) -> None:
        log.info(
            "cell.instance_state",
            instance_guid=record.guid,
            before=before,
            after=record.state,
            seq=record.seq,
        )
        event = InstanceEvent(
            cell_id=self._cell_id,
            instance=record.report(self._settings.host),
            from_state=before,
            to_state=record.state,
        )
        await self._publish(INSTANCE_EVENT, event)
        if record.state == InstanceState.RUNNING and before != InstanceState.RUNNING:
            await self._routes.register(record)
        elif before == InstanceState.RUNNING and record.state != InstanceState.RUNNING:
            # Stopping: withdrawn before the process is signalled (it still has its port).
            await self._routes.unregister(record)

    async def _send_heartbeat(self) -> None:
        await self._publish(CELL_HEARTBEAT, self.heartbeat())

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._send_heartbeat()
            await asyncio.sleep(self._settings.heartbeat_interval_seconds)

    async def _cell_log(self, record: InstanceRecord, line: str, stream: Stream = "stdout") -> None:
        await self._log_line(record, CELL_SOURCE, stream, line)

    async def _log_line(
        self, record: InstanceRecord, source: str, stream: Stream, line: str
    ) -> None:
        spec = record.spec
        try:
            subject = app_logs(spec.app_guid)
        except ValueError:
            return
        payload = LogLine(
            app_guid=spec.app_guid,
            source=source,
            stream=stream,
            line=line,
            timestamp=time.time_ns(),
            instance_guid=spec.instance_guid,
        )
        await self._publish(subject, payload)

    # --- logs --------------------------------------------------------------------------------

    def _open_tails(self, record: InstanceRecord, *, fresh: bool) -> None:
        directory = self.instance_dir(record.guid)
        offsets = {} if fresh else record.log_offsets
        self._tails[record.guid] = {
            stream: FileTail(log_path(directory, stream), offsets.get(stream, 0))
            for stream in STREAMS
        }

    async def _tail_loop(self) -> None:
        while True:
            await asyncio.sleep(TAIL_INTERVAL_SECONDS)
            for guid, tails in list(self._tails.items()):
                record = self._table.instances.get(guid)
                if record is None:
                    continue
                for stream, tail in tails.items():
                    for line in tail.read():
                        await self._log_line(record, _app_source(record), stream, line)

    async def _finish_logs(self, record: InstanceRecord) -> None:
        """Publish what the instance wrote last, before its directory goes."""
        tails = self._tails.pop(record.guid, None)
        if not tails:
            return
        for stream, tail in tails.items():
            for line in tail.finish():
                await self._log_line(record, _app_source(record), stream, line)
        record.log_offsets = {}

    # --- stats -------------------------------------------------------------------------------

    async def _stats(self, request: InstanceStatsRequest) -> StatsReply:
        wanted = set(request.process_guids)
        records = [
            record
            for record in self._table.instances.values()
            if not wanted or record.spec.process_guid in wanted
        ]
        samples = await asyncio.to_thread(self._sample, records)
        return StatsReply(
            cell_id=self._cell_id,
            instances=[self._usage(record, *samples[record.guid]) for record in records],
        )

    def _sample(self, records: list[InstanceRecord]) -> dict[str, tuple[Usage | None, int]]:
        """Off the event loop: /proc and the instance directories."""
        samples: dict[str, tuple[Usage | None, int]] = {}
        for record in records:
            handle = record.handle
            usage = self._runtime.usage(handle) if handle is not None else None
            samples[record.guid] = (usage, self._disk_bytes(record.guid))
        return samples

    def _disk_bytes(self, guid: str) -> int:
        now = time.monotonic()
        cached = self._disk.get(guid)
        if cached is not None and now - cached[0] < DISK_USAGE_TTL_SECONDS:
            return cached[1]
        size = directory_size(self.instance_dir(guid))
        self._disk[guid] = (now, size)
        return size

    def _usage(self, record: InstanceRecord, usage: Usage | None, disk: int) -> InstanceUsage:
        spec = record.spec
        uptime = 0.0
        if record.state == InstanceState.RUNNING and record.running_since is not None:
            uptime = max(0.0, self._now() - record.running_since)
        return InstanceUsage(
            instance_guid=record.guid,
            process_guid=spec.process_guid,
            index=spec.index,
            state=record.state,
            host=self._settings.host,
            port=record.port,
            uptime_seconds=uptime,
            cpu=self._cpu_fraction(record.guid, usage) if usage is not None else 0.0,
            memory_bytes=usage.memory_bytes if usage is not None else 0,
            disk_bytes=disk if record.allocating else 0,
            memory_quota_bytes=spec.memory_mb * MIB,
            disk_quota_bytes=spec.disk_mb * MIB,
            reason=record.reason,
            detail=record.detail,
        )

    def _cpu_fraction(self, guid: str, usage: Usage) -> float:
        """Over the time since the previous sample; the lifetime average for the first."""
        now = self._clock.monotonic()
        previous = self._cpu.get(guid)
        if previous is not None and now - previous[0] < CPU_MIN_SAMPLE_SECONDS:
            return previous[2]
        if previous is not None:
            fraction = max(0.0, usage.cpu_seconds - previous[1]) / (now - previous[0])
        else:
            fraction = usage.cpu_seconds / usage.age_seconds if usage.age_seconds > 0 else 0.0
        self._cpu[guid] = (now, usage.cpu_seconds, fraction)
        return fraction

    # --- time --------------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now().timestamp()


def _app_source(record: InstanceRecord) -> str:
    spec = record.spec
    return f"APP/PROC/{spec.process_type.upper()}/{spec.index}"


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel a task and wait until it is done (its exception, if any, is dropped)."""
    if task is asyncio.current_task():
        return
    # wait() neither raises the task's exception nor swallows our own cancellation; cancel
    # again should a library have swallowed the task's.
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled():
        task.exception()
