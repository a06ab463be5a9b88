"""Turning desired state into instances on cells: reconcile one process against what the cells
report, place what is missing (DESIGN.md section 7) and send `start`/`stop` to the cells.

It runs as the `process.schedule` job (one at a time per process, on the `placement` queue), so
a burst of scale requests collapses into few runs and an operator sees each one. Crash restarts
and lost cells belong to the health manager; this only makes the instance set match what a user
asked for. The health manager's starts come through `start_index`, which checks them against
desired state and takes turns per process with this controller's scheduling runs, so the two
never start the same index twice."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from overcast.bus import subjects
from overcast.bus.base import Bus, BusError
from overcast.bus.messages import (
    BadMessage,
    Checksum,
    DropletSource,
    HealthCheckSpec,
    InstanceSpec,
    InstanceStatsRequest,
    InstanceUsage,
    RpcReply,
    SetRoutes,
    StartInstance,
    StatsReply,
    StopInstance,
)
from overcast.controller.cells import CellDirectory, PlacedInstance
from overcast.controller.droplets import Droplets
from overcast.controller.placement import PlacementRequest, place
from overcast.controller.reconcile import ActualInstance, DesiredProcess, reconcile
from overcast.controller.scheduling import (
    SCHEDULE_OPERATION,
    SCHEDULE_QUEUE,
    request_schedule,
)
from overcast.core.clock import Clock
from overcast.core.ids import new_guid
from overcast.core.logging import get_logger
from overcast.jobs.engine import JobContext, JobEngine, Operation, Poll, StageOutcome, StageSpec
from overcast.models.environment import vcap_application
from overcast.models.instances import LIVE_STATES, CellState, InstanceState
from overcast.models.lifecycle import AppState
from overcast.models.resources import Actor, App, AuditEvent, Process
from overcast.store.base import Store

log = get_logger(__name__)

# Rounds of place -> start -> re-place the rejected, per run.
MAX_ROUNDS = 5
SYSTEM_ACTOR = Actor(guid="overcast-scheduler", type="system", name="scheduler")
RPC_TIMEOUT_SECONDS = 5.0
STATS_TIMEOUT_SECONDS = 2.0

# Why a start the health manager asks for is not made (plain strings: the API shows them).
NOT_DESIRED = "not desired"
INDEX_OUT_OF_RANGE = "index out of range"
STALE_VERSION = "stale version"
ALREADY_RUNNING = "already running"
CELLS_NOT_HEARD = "cells not heard from yet"
UNPLACED = "unplaced"


@dataclass
class StartPlan:
    """What a scheduling run knows about one process while it places it."""

    app: App
    process: Process
    spec_base: dict[str, object]
    # index -> cells that rejected (or did not answer) a start for it in this run
    excluded: dict[int, set[str]] = field(default_factory=dict)
    unplaced_reason: str | None = None


@dataclass(frozen=True)
class StartOutcome:
    accepted: bool
    # Why not: one of the strings above; `detail` says more when no cell could take it.
    reason: str | None = None
    detail: str | None = None


@dataclass
class _ProcessLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holders: int = 0


def desired_instances(app: App, process: Process) -> int:
    """How many instances of the process should run: none unless its app is started and has
    a droplet to run."""
    running = app.state == AppState.STARTED and app.current_droplet_guid is not None
    return process.instances if running else 0


def start_refusal(
    loaded: tuple[App, Process] | None, index: int, *, version: str | None = None
) -> str | None:
    """Why desired state does not want `index` of a process started, or None when it does.
    `version` is the process version the request was computed from, when it says."""
    if loaded is None:
        return NOT_DESIRED
    app, process = loaded
    wanted = desired_instances(app, process)
    if wanted == 0:
        return NOT_DESIRED
    if version is not None and version != process.version:
        return STALE_VERSION
    if not 0 <= index < wanted:
        return INDEX_OUT_OF_RANGE
    return None


class RouteSource(Protocol):
    """Where a process's routes come from (the routes use case)."""

    async def uris_of_processes(self, process_guids: Sequence[str]) -> dict[str, list[str]]: ...

    async def route_options(self, uris: Sequence[str]) -> dict[str, str]: ...


class Scheduler:
    # The routes of processes, for their instances to register; None: no routes (tests).
    routes: RouteSource | None = None

    def __init__(
        self,
        store: Store,
        clock: Clock,
        bus: Bus,
        directory: CellDirectory,
        droplets: Droplets,
        engine: JobEngine,
        *,
        rpc_timeout: float = RPC_TIMEOUT_SECONDS,
    ) -> None:
        self.store = store
        self.engine = engine
        self.clock = clock
        self.bus = bus
        self.directory = directory
        self.droplets = droplets
        self.rpc_timeout = rpc_timeout
        self.api_url = ""
        # Process guid -> the lock its scheduling runs and health manager starts take turns on.
        self._process_locks: dict[str, _ProcessLock] = {}

    def operations(self) -> list[Operation]:
        return [
            Operation(
                SCHEDULE_OPERATION,
                SCHEDULE_QUEUE,
                (StageSpec("place instances", self._schedule_stage),),
            )
        ]

    # --- after a restart --------------------------------------------------------------------

    async def resume_started_apps(self) -> int:
        """Queue a scheduling run for every process of every started app: after the whole
        platform restarted (the micro cloud stops its instances when it exits), what should
        run is started again. Runs that find nothing missing do nothing; identical queued runs
        of several controllers are joined. Crash restarts stay the health manager's job."""
        async with self.store.write() as tx:
            apps = await tx.apps.list_all({"states": [AppState.STARTED.value]})
            queued = 0
            for app in apps:
                if app.current_droplet_guid is None:
                    continue
                for process in await tx.processes.of_app(app.guid):
                    if process.instances > 0:
                        await request_schedule(tx, self.engine, app, process)
                        queued += 1
        self.engine.wake()
        return queued

    # --- the job ----------------------------------------------------------------------------

    async def _schedule_stage(self, context: JobContext) -> StageOutcome:
        if not self.directory.warm:
            return Poll(after_seconds=0.5, detail="waiting for the cells to report")
        summary = await self.schedule(context.job.target_guid)
        await context.set_result(**summary)
        return None

    async def schedule(self, process_guid: str) -> dict[str, object]:
        """One reconcile-place-start round trip for a process; returns a summary."""
        async with self._exclusive(process_guid):
            return await self._schedule(process_guid)

    async def _schedule(self, process_guid: str) -> dict[str, object]:
        loaded = await self._load(process_guid)
        started = stopped = 0
        plan: StartPlan | None = None
        for _ in range(MAX_ROUNDS):
            desired = self._desired(process_guid, loaded)
            actions = reconcile(desired, self._actual(process_guid))
            stopped += await self._stop_all(
                [
                    (
                        s.instance.cell_id,
                        s.instance.instance_guid,
                        s.instance.version,
                        s.reason.value,
                    )
                    for s in actions.stops
                ]
            )
            if not actions.starts or loaded is None:
                break
            if plan is None:
                plan = await self._start_plan(loaded)
                if plan.unplaced_reason is not None:
                    break
            accepted, retry = await self._place_and_start(plan, actions.starts)
            started += accepted
            if not retry:
                break
        reason = plan.unplaced_reason if plan is not None else None
        if loaded is not None:
            await self._record_placement_error(loaded[1], reason)
        return {"started": started, "stopped": stopped, "unplaced_reason": reason}

    async def _load(self, process_guid: str) -> tuple[App, Process] | None:
        async with self.store.read() as tx:
            process = await tx.processes.get(process_guid)
            if process is None:
                return None
            app = await tx.apps.get(process.app_guid)
            return None if app is None else (app, process)

    def _desired(self, process_guid: str, loaded: tuple[App, Process] | None) -> DesiredProcess:
        if loaded is None:
            return DesiredProcess(process_guid=process_guid, version="", instances=0)
        app, process = loaded
        return DesiredProcess(
            process_guid=process.guid,
            version=process.version,
            instances=desired_instances(app, process),
        )

    def _actual(self, process_guid: str) -> list[ActualInstance]:
        return [_actual_instance(placed) for placed in self.reachable_instances(process_guid)]

    def reachable_instances(self, process_guid: str) -> list[PlacedInstance]:
        """The process's instances except those on cells presumed lost. A lost cell's instance
        cannot be reached: counting it would keep it and stop its healthy replacement as a
        duplicate, and a stop sent to it would only time out. The health manager re-places
        it; if its cell comes back, the next run stops whichever copy is extra."""
        return [
            placed
            for placed in self.directory.instances(process_guid=process_guid)
            if not self.on_lost_cell(placed.cell_id)
        ]

    def on_lost_cell(self, cell_id: str) -> bool:
        record = self.directory.cell(cell_id)
        return record is not None and self.directory.cell_state(record) == CellState.LOST

    @contextlib.asynccontextmanager
    async def _exclusive(self, process_guid: str) -> AsyncIterator[None]:
        """One scheduling run or health manager start of a process at a time, so neither
        starts an index the other is starting; the lock goes once nobody holds or awaits it."""
        entry = self._process_locks.setdefault(process_guid, _ProcessLock())
        entry.holders += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.holders -= 1
            if entry.holders == 0:
                del self._process_locks[process_guid]

    # --- starts the health manager asks for -------------------------------------------------

    async def start_index(
        self, process_guid: str, index: int, *, crash_count: int = 0, version: str | None = None
    ) -> StartOutcome:
        """Start one instance at `index` (crashed, lost with its cell, or missing), if desired
        state wants it and no live instance of the desired version holds it on a reachable
        cell. The replacement inherits `crash_count` so that crash back-off grows across
        replacements. A cell that rejects the start is left out and the next one tried."""
        async with self._exclusive(process_guid):
            loaded = await self._load(process_guid)
            refusal = start_refusal(loaded, index, version=version)
            if refusal is not None:
                return StartOutcome(accepted=False, reason=refusal)
            assert loaded is not None
            if not self.directory.warm:
                # Until every cell has had time to answer, a live instance may be one not
                # heard of yet: a start now could be a second copy.
                return StartOutcome(accepted=False, reason=CELLS_NOT_HEARD)
            if self._holds_index(loaded[1], index):
                return StartOutcome(accepted=False, reason=ALREADY_RUNNING)
            return await self._start_at(await self._start_plan(loaded), index, crash_count)

    def _holds_index(self, process: Process, index: int) -> bool:
        return any(
            placed.report.index == index
            and placed.report.version == process.version
            and placed.report.state in LIVE_STATES
            for placed in self.reachable_instances(process.guid)
        )

    async def _start_at(self, plan: StartPlan, index: int, crash_count: int) -> StartOutcome:
        for _ in range(MAX_ROUNDS):
            if plan.unplaced_reason is not None:
                break
            accepted, _ = await self._place_and_start(plan, [index], crash_count=crash_count)
            if accepted:
                return StartOutcome(accepted=True)
        detail = plan.unplaced_reason or f"the cells rejected it {MAX_ROUNDS} times"
        return StartOutcome(accepted=False, reason=UNPLACED, detail=detail)

    # --- starting ---------------------------------------------------------------------------

    async def _start_plan(self, loaded: tuple[App, Process]) -> StartPlan:
        app, process = loaded
        plan = StartPlan(app=app, process=process, spec_base={})
        found = await self.droplets.for_start(app.guid)
        if found is None:
            plan.unplaced_reason = "the app has no staged droplet"
            return plan
        droplet, url = found
        command = process.command or droplet.process_types.get(process.type)
        if not command:
            plan.unplaced_reason = (
                f"no start command: the droplet has no {process.type!r} process type and the "
                "process has no command"
            )
            return plan
        async with self.store.read() as tx:
            space = await tx.spaces.require(app.space_guid)
            org = await tx.orgs.require(space.org_guid)
        routes, route_options = await self._routes_of(process.guid)
        environment = dict(app.environment_variables)
        environment["VCAP_APPLICATION"] = json.dumps(
            vcap_application(app, space, org, api_url=self.api_url, uris=routes, process=process)
        )
        environment["VCAP_SERVICES"] = "{}"
        health = process.health_check
        plan.spec_base = {
            "process_guid": process.guid,
            "process_type": process.type,
            "version": process.version,
            "app_guid": app.guid,
            "app_name": app.name,
            "space_guid": space.guid,
            "org_guid": org.guid,
            "droplet": DropletSource(
                guid=droplet.guid, url=url, checksum=Checksum(value=droplet.checksum or "")
            ),
            "command": command,
            "environment": environment,
            "memory_mb": process.memory_in_mb,
            "disk_mb": process.disk_in_mb,
            "stack": droplet.stack or app.stack,
            "health_check": HealthCheckSpec(
                type=health.type.value,
                endpoint=health.endpoint,
                timeout_seconds=float(health.timeout or 60),
                invocation_timeout_seconds=float(health.invocation_timeout or 1),
            ),
            "log_rate_limit_bytes_per_second": process.log_rate_limit_in_bytes_per_second,
            "routes": routes,
            "route_options": route_options,
        }
        return plan

    async def _routes_of(self, process_guid: str) -> tuple[list[str], dict[str, str]]:
        """The process's uris, and the load balancing of those that are not round-robin."""
        if self.routes is None:
            return [], {}
        uris = (await self.routes.uris_of_processes([process_guid])).get(process_guid, [])
        options = await self.routes.route_options(uris) if uris else {}
        return uris, {uri: mode for uri, mode in options.items() if mode != "round-robin"}

    async def push_routes(self, process_guids: list[str]) -> None:
        """Routes were mapped or unmapped: the cells holding the processes' instances get
        the new lists at once (their running instances register them; nothing restarts)."""
        accepted = 0
        for process_guid in sorted(set(process_guids)):
            cells = {
                placed.cell_id for placed in self.directory.instances(process_guid=process_guid)
            }
            if not cells:
                continue
            routes, options = await self._routes_of(process_guid)
            command = SetRoutes(
                process_guid=process_guid, routes=routes, route_options=options
            ).wire()
            replies = await asyncio.gather(*(self.rpc(cell, command) for cell in sorted(cells)))
            accepted += sum(1 for reply in replies if reply is not None and reply.accepted)
        log.info("scheduler.routes_pushed", processes=len(set(process_guids)), cells=accepted)

    async def _place_and_start(
        self, plan: StartPlan, indices: Sequence[int], *, crash_count: int = 0
    ) -> tuple[int, bool]:
        """Place and start `indices`; returns (accepted, whether a retry could help)."""
        process = plan.process
        requests = [
            PlacementRequest(
                key=str(index),
                process_guid=process.guid,
                memory_mb=process.memory_in_mb,
                disk_mb=process.disk_in_mb,
                stack=str(plan.spec_base["stack"]),
                tags=frozenset(),
                exclude=frozenset(plan.excluded.get(index, set())),
            )
            for index in indices
        ]
        result = place(requests, self.directory.placement_views())
        plan.unplaced_reason = result.unplaced[0].reason if result.unplaced else None
        if plan.unplaced_reason is not None:
            log.warning(
                "scheduler.unplaced",
                process_guid=process.guid,
                instances=len(result.unplaced),
                reason=plan.unplaced_reason,
            )
        starts = [
            self._start_one(plan, int(placement.request.key), placement.cell_id, crash_count)
            for placement in result.placed
        ]
        outcomes = await asyncio.gather(*starts)
        accepted = sum(1 for ok in outcomes if ok)
        return accepted, accepted < len(outcomes)

    async def _start_one(
        self, plan: StartPlan, index: int, cell_id: str, crash_count: int = 0
    ) -> bool:
        spec = InstanceSpec.model_validate(
            {
                **plan.spec_base,
                "instance_guid": new_guid(),
                "index": index,
                "crash_count": crash_count,
            }
        )
        reply = await self.rpc(cell_id, StartInstance(instance=spec).wire())
        if reply is not None and reply.accepted:
            if reply.instance is not None:
                self.directory.observe_report(cell_id, reply.instance)
            return True
        plan.excluded.setdefault(index, set()).add(cell_id)
        log.info(
            "scheduler.start_rejected",
            cell_id=cell_id,
            process_guid=plan.process.guid,
            index=index,
            reason=(reply.reason.value if reply and reply.reason else "no answer"),
        )
        return False

    # --- stopping ---------------------------------------------------------------------------

    async def _stop_all(self, stops: Sequence[tuple[str, str, str, str]]) -> int:
        outcomes = await asyncio.gather(
            *(
                self.stop_instance(cell, guid, version, reason)
                for cell, guid, version, reason in stops
            )
        )
        return sum(1 for ok in outcomes if ok)

    async def stop_instance(
        self, cell_id: str, instance_guid: str, version: str, reason: str
    ) -> bool:
        command = StopInstance(instance_guid=instance_guid, version=version, reason=reason)
        reply = await self.rpc(cell_id, command.wire())
        if reply is None or not reply.accepted:
            return False
        placed = next(
            (p for p in self.directory.instances() if p.report.instance_guid == instance_guid),
            None,
        )
        if placed is not None:
            # The cell confirms with events; until then nothing must count it as running.
            stopping = placed.report.model_copy(
                update={"state": InstanceState.STOPPING, "seq": max(reply.seq, placed.report.seq)}
            )
            self.directory.observe_report(cell_id, stopping)
        return True

    async def stop_app_instances(self, app_guid: str) -> int:
        """Stop every instance of an app at once (the app is being deleted)."""
        placed = self.directory.instances(app_guid=app_guid)
        return await self._stop_all(
            [
                (p.cell_id, p.report.instance_guid, p.report.version, "app deleted")
                for p in placed
                if p.report.state != InstanceState.STOPPING
            ]
        )

    # --- stats ------------------------------------------------------------------------------

    async def usage_of(self, process_guid: str) -> dict[str, InstanceUsage]:
        """Live usage of a process's instances, asked of the cells that hold them; a cell that
        does not answer in time just leaves its instances without usage figures."""
        cells = {p.cell_id for p in self.directory.instances(process_guid=process_guid)}
        request = InstanceStatsRequest(process_guids=[process_guid]).wire()
        replies = await asyncio.gather(*(self._stats(cell, request) for cell in sorted(cells)))
        usage: dict[str, InstanceUsage] = {}
        for reply in replies:
            for item in reply.instances if reply else []:
                usage[item.instance_guid] = item
        return usage

    async def _stats(self, cell_id: str, request: dict[str, object]) -> StatsReply | None:
        try:
            message = await self.bus.request(
                subjects.cell_rpc(cell_id), dict(request), timeout=STATS_TIMEOUT_SECONDS
            )
            return StatsReply.parse(message.data)
        except (BusError, BadMessage) as error:
            log.info("scheduler.stats_unavailable", cell_id=cell_id, error=str(error))
            return None

    # --- plumbing ---------------------------------------------------------------------------

    async def rpc(self, cell_id: str, command: dict[str, object]) -> RpcReply | None:
        try:
            message = await self.bus.request(
                subjects.cell_rpc(cell_id), dict(command), timeout=self.rpc_timeout
            )
            return RpcReply.parse(message.data)
        except (BusError, BadMessage) as error:
            log.warning(
                "scheduler.rpc_failed", cell_id=cell_id, op=command.get("op"), error=str(error)
            )
            return None

    async def _record_placement_error(self, process: Process, reason: str | None) -> None:
        if process.placement_error == reason:
            return
        async with self.store.write() as tx:
            app = await tx.apps.get(process.app_guid)
            if app is None or await tx.processes.get(process.guid) is None:
                return
            await tx.processes.update(
                process.guid, lambda current: dataclasses.replace(current, placement_error=reason)
            )
            if reason is not None:
                space = await tx.spaces.require(app.space_guid)
                await tx.events.add(
                    AuditEvent(
                        guid=new_guid(),
                        type="audit.app.process.unplaceable",
                        actor=SYSTEM_ACTOR,
                        target_guid=app.guid,
                        target_type="app",
                        target_name=app.name,
                        created_at=self.clock.now(),
                        data={
                            "process_guid": process.guid,
                            "process_type": process.type,
                            "reason": reason,
                        },
                        space_guid=space.guid,
                        org_guid=space.org_guid,
                    )
                )


def _actual_instance(placed: PlacedInstance) -> ActualInstance:
    report = placed.report
    return ActualInstance(
        instance_guid=report.instance_guid,
        cell_id=placed.cell_id,
        index=report.index,
        version=report.version,
        state=report.state,
        since=report.since,
    )
