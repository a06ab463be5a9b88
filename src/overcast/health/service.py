"""The health service (DESIGN.md sections 1 and 7): actual state from `cell.heartbeat` and
`instance.event`, desired state fetched in bulk from the controller, `converge()` on every
event that matters (a crash, a cell falling silent) and on a periodic sweep, and the plan's
actions asked of the controller, which checks each against its own desired state: the health
service cannot change what should run, only point at what does not.

It takes no destructive action on stale or missing desired state (converge's guards), waits
for a full round of heartbeats after it starts (before that, everything looks missing), and
does not ask twice for what it already asked while the answer is on its way (a start shows in
a heartbeat a moment later)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from overcast.bus import subjects
from overcast.bus.base import Bus, Message, Subscription
from overcast.bus.messages import BadMessage, CellDiscover, CellLost, Heartbeat, InstanceEvent
from overcast.core.logging import get_logger
from overcast.health.actual import ActualState
from overcast.health.converge import (
    ConvergePolicy,
    DesiredProcess,
    DesiredState,
    Freshness,
    Plan,
    StartAction,
    StopAction,
    StopReason,
    converge,
)
from overcast.models.instances import InstanceState

log = get_logger(__name__)


class ControllerPort(Protocol):
    """What the health service asks of the controller (over HTTP, or in process in the micro
    cloud): the bulk desired state, and actions it checks before carrying them out."""

    async def desired(self) -> dict[str, Any]: ...

    async def act(self, request: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class HealthOptions:
    desired_refresh_seconds: float = 5.0
    # At most one converge run this often (events in between are batched into the next run).
    converge_interval_seconds: float = 0.1
    # A run happens at least this often even without events (due restarts, silent cells).
    sweep_seconds: float = 1.0
    # An action asked for and not yet seen done is not asked again before this.
    inflight_seconds: float = 30.0
    # No action until this long after start, and one heartbeat round was heard.
    warm_up_seconds: float = 2.0


@dataclass
class HealthCounters:
    converge_runs: int = 0
    starts_by_reason: Counter[str] = field(default_factory=Counter)
    stops_by_reason: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    crashes_reported: int = 0
    desired_refreshes: int = 0
    desired_failures: int = 0
    act_failures: int = 0
    # Seconds from hearing a crash (or a cell's silence being judged lost) to asking for the
    # replacement: the latest, and every one (bounded) for the metrics' summary.
    detection_latencies: list[float] = field(default_factory=list)


class HealthService:
    def __init__(
        self,
        bus: Bus,
        port: ControllerPort,
        options: HealthOptions | None = None,
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.port = port
        self.options = options or HealthOptions()
        self.policy = ConvergePolicy(desired_refresh_interval=self.options.desired_refresh_seconds)
        self._wall = wall
        self.actual = ActualState()
        self.desired: DesiredState | None = None
        self.counters = HealthCounters()
        self.last_plan: Plan | None = None
        self._unknown_since: dict[str, int] = {}
        self._refreshes = 0
        self._started_at = 0.0
        self._wake = asyncio.Event()
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        # (process, index) -> when its start was asked and the instance it replaces; instance
        # guid -> when its stop was asked.
        self._starting: dict[tuple[str, int], tuple[float, str | None]] = {}
        self._stopping: dict[str, float] = {}
        # Crashes heard and not yet reported: instance guid -> (crash record, heard at).
        self._crashes: dict[tuple[str, int], dict[str, Any]] = {}
        self._heard_at: dict[tuple[str, int], float] = {}
        self._reported_crashes: set[tuple[str, int]] = set()
        # Instances heard before the current desired state was asked for: only these may be
        # stopped for what it says (an instance heard later may belong to a start or a scale
        # that the snapshot, read earlier, does not show yet).
        self._covered: set[str] = set()
        # Cells announced lost to the routers and not yet announced back.
        self._withdrawn: set[str] = set()

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._started_at = self._wall()
        self._subscriptions = [
            await self.bus.subscribe(subjects.CELL_HEARTBEAT, self._on_heartbeat),
            await self.bus.subscribe(subjects.INSTANCE_EVENT, self._on_event),
        ]
        with contextlib.suppress(Exception):  # heartbeats come anyway
            await self.bus.publish(subjects.CELL_DISCOVER, CellDiscover(requester="health").wire())
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._refresh_forever(), name="health-desired"),
            loop.create_task(self._converge_forever(), name="health-converge"),
        ]
        log.info("health.started")

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions = []
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        log.info("health.stopped")

    # --- input ------------------------------------------------------------------------------

    async def _on_heartbeat(self, message: Message) -> None:
        try:
            heartbeat = Heartbeat.parse(message.data)
        except BadMessage as error:
            log.warning("health.bad_heartbeat", error=str(error))
            return
        self.actual.observe_heartbeat(heartbeat, self._wall())

    async def _on_event(self, message: Message) -> None:
        try:
            event = InstanceEvent.parse(message.data)
        except BadMessage as error:
            log.warning("health.bad_instance_event", error=str(error))
            return
        self.actual.observe_event(event)
        report = event.instance
        if event.to_state == InstanceState.CRASHED:
            key = (report.instance_guid, report.crash_count)
            if key not in self._reported_crashes:
                self._crashes[key] = _crash_record(event)
                self._heard_at[(report.process_guid, report.index)] = self._wall()
            self._wake.set()

    # --- desired state ----------------------------------------------------------------------

    async def _refresh_forever(self) -> None:
        while True:
            await self.refresh_desired()
            await asyncio.sleep(self.options.desired_refresh_seconds)

    async def refresh_desired(self) -> bool:
        """Fetch the bulk desired state; on failure the old one is kept and ages (converge
        stops acting destructively once it is too old)."""
        heard = {instance.instance_guid for instance in self.actual.instances()}
        try:
            body = await self.port.desired()
            processes = {
                item["process_guid"]: DesiredProcess(
                    process_guid=item["process_guid"],
                    app_guid=item["app_guid"],
                    version=item["version"],
                    instances=int(item["instances"]),
                )
                for item in body["processes"]
            }
        except Exception as error:
            self.counters.desired_failures += 1
            log.warning("health.desired_unavailable", error=type(error).__name__)
            return False
        self._refreshes += 1
        self.counters.desired_refreshes += 1
        self._covered = heard
        self.desired = DesiredState(
            processes=processes, fetched_at=self._wall(), refreshes=self._refreshes
        )
        self._wake.set()
        return True

    # --- converging -------------------------------------------------------------------------

    async def _converge_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.options.sweep_seconds)
            self._wake.clear()
            try:
                await self.converge_once()
            except Exception:  # a failed run must not end the runs
                log.exception("health.converge_failed")
            await asyncio.sleep(self.options.converge_interval_seconds)

    @property
    def ready(self) -> bool:
        return self.desired is not None and self.warmed_up(self._wall())

    def warmed_up(self, now: float) -> bool:
        """A full round of heartbeats heard since start: before it, instances look missing."""
        interval = self.actual.max_heartbeat_interval()
        if interval is None:
            return False
        return now - self._started_at >= max(self.options.warm_up_seconds, interval * 1.5)

    async def converge_once(self) -> Plan | None:
        now = self._wall()
        if not self.warmed_up(now):
            return None
        plan = converge(
            self.desired,
            self.actual.instances(),
            self.actual.cells(),
            now,
            unknown_since=self._unknown_since,
            policy=self.policy,
        )
        self.counters.converge_runs += 1
        self.last_plan = plan
        newly_lost = self.actual.mark_lost(plan.lost_cells)
        if newly_lost:
            await self._announce_lost(newly_lost, plan, now)
        self._unknown_since = dict(plan.unknown_since)
        self._forget_settled(now)
        due = [start for start in plan.starts if start.not_before <= now]
        starts = [start for start in due if self._may_start(start, now)]
        # A crash record is stopped only with its replacement's start: while that start waits
        # (in flight), the record keeps the index and its crash count.
        held = {start.replaces for start in due if start not in starts and start.replaces}
        stops = [
            stop
            for stop in plan.stops
            if stop.instance_guid not in self._stopping
            and stop.instance_guid not in held
            and (stop.reason not in _BY_DESIRED_STATE or stop.instance_guid in self._covered)
        ]
        crashes = list(self._crashes.values())
        if starts or stops or crashes:
            await self._ask(plan, starts, stops, crashes, now)
        if self._withdrawn:
            await self._announce_back(plan, now)
        return plan

    async def _announce_lost(self, cell_ids: set[str], plan: Plan, now: float) -> None:
        """Tell the routers (`cell.lost`) to stop sending requests to these cells. Not when
        every cell fell silent at once: that is more likely this service's own link than
        every cell dying, and withdrawing every route would take apps down for nothing."""
        if len(plan.lost_cells) >= self.actual.cell_count():
            log.warning("health.all_cells_silent", cells=len(plan.lost_cells))
            return
        for cell_id in sorted(cell_ids):
            verdict = CellLost(
                cell_id=cell_id,
                judged_by="health",
                at=now,
                last_heard=self.actual.last_heard(cell_id),
            )
            log.warning("health.cell_lost", cell_id=cell_id)
            try:
                await self.bus.publish(subjects.CELL_LOST, verdict.wire())
            except Exception as error:  # the routers' stale threshold still applies
                log.warning("health.cell_lost_unannounced", error=type(error).__name__)
            else:
                self._withdrawn.add(cell_id)

    async def _announce_back(self, plan: Plan, now: float) -> None:
        """Tell the routers that a cell announced lost is heard again and settled: none of its
        instances is being stopped or replaced any more (its copies of re-placed indexes are
        gone), so what it still runs is what should run, and its registrations are taken
        again. Until then the routers refuse them (for lost_cell_hold_seconds at most)."""
        if plan.freshness is not Freshness.FRESH:
            return  # no stops on stale desired state: duplicates may still be there
        where = {i.instance_guid: i.cell_id for i in self.actual.instances()}
        going = set(self._stopping) | {r for _, r in self._starting.values() if r is not None}
        busy = {stop.cell_id for stop in plan.stops} | {where[g] for g in going if g in where}
        for cell_id in sorted(self._withdrawn - set(plan.lost_cells) - busy):
            verdict = CellLost(cell_id=cell_id, judged_by="health", at=now, back=True)
            try:
                await self.bus.publish(subjects.CELL_LOST, verdict.wire())
            except Exception as error:
                log.warning("health.cell_back_unannounced", error=type(error).__name__)
                continue
            self._withdrawn.discard(cell_id)
            log.info("health.cell_back", cell_id=cell_id)

    def _may_start(self, start: StartAction, now: float) -> bool:
        asked = self._starting.get((start.process_guid, start.index))
        return asked is None or now - asked[0] > self.options.inflight_seconds

    def _forget_settled(self, now: float) -> None:
        """Asked-for actions that are done or too old to wait on: a start once any instance
        other than the one it replaces holds its index (live, or crashed already: converge
        then sees that one), a stop once its instance is gone."""
        instances = self.actual.instances()
        holders: dict[tuple[str, int], set[str]] = {}
        for instance in instances:
            holders.setdefault((instance.process_guid, instance.index), set()).add(
                instance.instance_guid
            )
        limit = self.options.inflight_seconds
        self._starting = {
            key: (asked, replaces)
            for key, (asked, replaces) in self._starting.items()
            if not (holders.get(key, set()) - {replaces}) and now - asked <= limit
        }
        present = {instance.instance_guid for instance in instances}
        self._stopping = {
            guid: asked
            for guid, asked in self._stopping.items()
            if guid in present and now - asked <= limit
        }

    async def _ask(
        self,
        plan: Plan,
        starts: list[StartAction],
        stops: list[StopAction],
        crashes: list[dict[str, Any]],
        now: float,
    ) -> None:
        request = {
            "starts": [_start_body(start) for start in starts],
            "stops": [_stop_body(stop) for stop in stops],
            "crashes": crashes,
            "waiting": [
                {
                    "process_guid": waiting.process_guid,
                    "index": waiting.index,
                    "instance_guid": waiting.instance_guid,
                    "crash_count": waiting.crash_count,
                    "restart_at": waiting.restart_at,
                }
                for waiting in plan.waiting
            ],
            "status": self.status(),
        }
        for start in starts:
            self._starting[(start.process_guid, start.index)] = (now, start.replaces)
        for stop in stops:
            self._stopping[stop.instance_guid] = now
        try:
            results = await self.port.act(request)
        except Exception as error:
            self.counters.act_failures += 1
            log.warning("health.act_failed", error=type(error).__name__)
            for start in starts:
                self._starting.pop((start.process_guid, start.index), None)
            for stop in stops:
                self._stopping.pop(stop.instance_guid, None)
            return
        self._count(starts, stops, results, now)
        for key in [_crash_key(crash) for crash in crashes]:
            self._reported_crashes.add(key)
            self._crashes.pop(key, None)
        self.counters.crashes_reported += len(crashes)

    def _count(
        self,
        starts: list[StartAction],
        stops: list[StopAction],
        results: dict[str, Any],
        now: float,
    ) -> None:
        answered = {
            (item["process_guid"], item["index"]): item for item in results.get("starts", [])
        }
        for start in starts:
            key = (start.process_guid, start.index)
            result = answered.get(key)
            if result is not None and result.get("accepted"):
                self.counters.starts_by_reason[start.reason.value] += 1
                heard = self._heard_at.pop(key, None)
                if heard is not None:
                    self._latency(now - heard)
                log.info(
                    "health.start_asked",
                    process_guid=start.process_guid,
                    index=start.index,
                    reason=start.reason.value,
                )
            else:
                refused = (result or {}).get("reason") or "no answer"
                self.counters.refused[str(refused)] += 1
                self._starting.pop(key, None)
        stopped = {item["instance_guid"]: item for item in results.get("stops", [])}
        for stop in stops:
            result = stopped.get(stop.instance_guid)
            if result is not None and result.get("accepted"):
                self.counters.stops_by_reason[stop.reason.value] += 1
            else:
                # Refused (a crash record whose replacement was refused, a last live holder):
                # asked again on the next run that plans it, not after inflight_seconds.
                refused = (result or {}).get("reason") or "no answer"
                self.counters.refused[str(refused)] += 1
                self._stopping.pop(stop.instance_guid, None)

    def _latency(self, seconds: float) -> None:
        latencies = self.counters.detection_latencies
        latencies.append(seconds)
        del latencies[:-1000]

    # --- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Figures for the controller's GET /v3/x/health (numbers and words, none empty)."""
        plan = self.last_plan
        latencies = self.counters.detection_latencies
        figures: dict[str, Any] = {
            "converge_runs": self.counters.converge_runs,
            "desired_refreshes": self.counters.desired_refreshes,
            "desired_failures": self.counters.desired_failures,
            "act_failures": self.counters.act_failures,
            "crashes_reported": self.counters.crashes_reported,
            "freshness": plan.freshness.value if plan else Freshness.UNAVAILABLE.value,
            "cells": self.actual.cell_count(),
            "lost_cells": len(plan.lost_cells) if plan else 0,
            "instances": self.actual.instance_count(),
            "waiting_restarts": len(plan.waiting) if plan else 0,
            "last_detection_latency_seconds": latencies[-1] if latencies else None,
            **_by_reason("starts", self.counters.starts_by_reason),
            **_by_reason("stops", self.counters.stops_by_reason),
        }
        return {key: value for key, value in figures.items() if value is not None}


# Stops that only desired state justifies (the others follow from actual state alone).
_BY_DESIRED_STATE = frozenset(
    {StopReason.APP_STOPPED, StopReason.EXTRA_INDEX, StopReason.STALE_VERSION}
)


def _by_reason(prefix: str, counts: Counter[str]) -> dict[str, int]:
    return {f"{prefix}_{reason.lower()}": count for reason, count in counts.items()}


def _crash_key(crash: dict[str, Any]) -> tuple[str, int]:
    return (str(crash["instance_guid"]), int(crash["crash_count"]))


def _crash_record(event: InstanceEvent) -> dict[str, Any]:
    report = event.instance
    return {
        "instance_guid": report.instance_guid,
        "process_guid": report.process_guid,
        "app_guid": report.app_guid,
        "index": report.index,
        "cell_id": event.cell_id,
        "reason": report.reason or "CRASHED",
        "detail": report.detail,
        "exit_status": report.exit_status,
        "crash_count": report.crash_count,
        "crashed_at": report.since,
    }


def _start_body(start: StartAction) -> dict[str, Any]:
    return {
        "process_guid": start.process_guid,
        "index": start.index,
        "reason": start.reason.value,
        "crash_count": start.crash_count,
        "replaces": start.replaces,
        "version": start.version,
    }


def _stop_body(stop: StopAction) -> dict[str, Any]:
    return {
        "instance_guid": stop.instance_guid,
        "cell_id": stop.cell_id,
        "process_guid": stop.process_guid,
        "reason": stop.reason.value,
    }
