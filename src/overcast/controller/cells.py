"""The controller's view of actual state: the cells' latest heartbeats, merged with the instance
events and RPC replies that arrived since (DESIGN.md sections 4 and 7).

Soft state only: it is rebuilt from heartbeats after a restart (a `cell.discover` makes every
cell heartbeat at once), so it is never persisted. Every report carries the cell's sequence
number; for each instance the report with the highest one wins, whatever order they arrived
in, so a heartbeat sent just before a stop cannot bring the stopped instance back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from overcast.bus import subjects
from overcast.bus.base import Bus, Message, Subscription
from overcast.bus.messages import (
    BadMessage,
    CellDiscover,
    Heartbeat,
    InstanceEvent,
    InstanceReport,
)
from overcast.bus.reports import apply_report, merge_heartbeat
from overcast.controller.placement import Capacity, CellView
from overcast.core.logging import get_logger
from overcast.models.instances import ALLOCATING_STATES, LIVE_STATES, CellState, InstanceState

log = get_logger(__name__)

# A cell is presumed lost after this many heartbeat intervals without one (DESIGN.md §7).
MISSED_HEARTBEATS = 3


@dataclass
class CellRecord:
    heartbeat: Heartbeat
    # Monotonic time the latest heartbeat arrived.
    received_at: float
    # Instance guid -> newest report (STOPPED ones are kept as tombstones until a heartbeat
    # that is newer than them no longer lists them).
    instances: dict[str, InstanceReport] = field(default_factory=dict)

    @property
    def cell_id(self) -> str:
        return self.heartbeat.cell_id

    def is_fresh(self, now: float) -> bool:
        return now - self.received_at <= MISSED_HEARTBEATS * self.heartbeat.interval_seconds

    def state(self, now: float) -> CellState:
        return self.heartbeat.state if self.is_fresh(now) else CellState.LOST

    def visible_instances(self) -> list[InstanceReport]:
        return [i for i in self.instances.values() if i.state != InstanceState.STOPPED]

    def allocated(self) -> tuple[int, int, int]:
        """(memory MB, disk MB, containers) in use: what the cell said, or more when a start
        it accepted since its last heartbeat is known."""
        memory = disk = containers = 0
        for report in self.visible_instances():
            if report.state in ALLOCATING_STATES:
                memory += report.memory_mb
                disk += report.disk_mb
                containers += 1
        said = self.heartbeat.allocated
        if self.instances_changed_since_heartbeat():
            return memory, disk, containers
        return said.memory_mb, said.disk_mb, said.containers

    def instances_changed_since_heartbeat(self) -> bool:
        return any(report.seq > self.heartbeat.seq for report in self.instances.values())

    def last_heartbeat_at(self) -> datetime:
        return datetime.fromtimestamp(self.heartbeat.sent_at, UTC)


@dataclass(frozen=True)
class PlacedInstance:
    cell_id: str
    report: InstanceReport


class CellDirectory:
    def __init__(
        self,
        bus: Bus,
        *,
        requester: str,
        warm_up_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus = bus
        self._requester = requester
        self._warm_up = warm_up_seconds
        self._monotonic = monotonic
        self._cells: dict[str, CellRecord] = {}
        # Reports about cells whose first heartbeat has not arrived yet.
        self._early: dict[str, dict[str, InstanceReport]] = {}
        self._subscriptions: list[Subscription] = []
        self._started_at: float | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._subscriptions = [
            await self._bus.subscribe(subjects.CELL_HEARTBEAT, self._on_heartbeat),
            await self._bus.subscribe(subjects.INSTANCE_EVENT, self._on_event),
        ]
        self._started_at = self._monotonic()
        try:
            await self._bus.publish(
                subjects.CELL_DISCOVER, CellDiscover(requester=self._requester).wire()
            )
        except Exception:  # the periodic heartbeats will fill the view anyway
            log.warning("cells.discover_failed")

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions = []

    @property
    def warm(self) -> bool:
        """True once every cell has had time to answer the discover: before that, a missing
        instance may only be one we have not heard of yet, and must not be started twice."""
        return (
            self._started_at is not None and self._monotonic() - self._started_at >= self._warm_up
        )

    # --- input ------------------------------------------------------------------------------

    async def _on_heartbeat(self, message: Message) -> None:
        try:
            heartbeat = Heartbeat.parse(message.data)
        except BadMessage as error:
            log.warning("cells.bad_heartbeat", error=str(error))
            return
        self.observe_heartbeat(heartbeat)

    async def _on_event(self, message: Message) -> None:
        try:
            event = InstanceEvent.parse(message.data)
        except BadMessage as error:
            log.warning("cells.bad_instance_event", error=str(error))
            return
        self.observe_report(event.cell_id, event.instance)

    def observe_heartbeat(self, heartbeat: Heartbeat) -> None:
        now = self._monotonic()
        record = self._cells.get(heartbeat.cell_id)
        if record is None:
            known = self._early.pop(heartbeat.cell_id, {})
            record = CellRecord(heartbeat=heartbeat, received_at=now)
            record.instances = merge_heartbeat(known, heartbeat)
            self._cells[heartbeat.cell_id] = record
            log.info("cells.joined", cell_id=heartbeat.cell_id, zone=heartbeat.zone)
            return
        record.received_at = now
        if heartbeat.seq < record.heartbeat.seq and heartbeat.started_at <= (
            record.heartbeat.started_at
        ):
            return  # an older heartbeat overtaken by a newer one: only liveness counts
        record.instances = merge_heartbeat(record.instances, heartbeat)
        record.heartbeat = heartbeat

    def observe_report(self, cell_id: str, report: InstanceReport) -> None:
        record = self._cells.get(cell_id)
        known = record.instances if record is not None else self._early.setdefault(cell_id, {})
        apply_report(known, report)

    def forget(self, cell_id: str) -> None:
        self._cells.pop(cell_id, None)

    # --- queries ----------------------------------------------------------------------------

    def cells(self) -> list[CellRecord]:
        return sorted(self._cells.values(), key=lambda record: record.cell_id)

    def cell(self, cell_id: str) -> CellRecord | None:
        return self._cells.get(cell_id)

    def cell_state(self, record: CellRecord) -> CellState:
        return record.state(self._monotonic())

    def instances(
        self, *, process_guid: str | None = None, app_guid: str | None = None
    ) -> list[PlacedInstance]:
        found = []
        for record in self.cells():
            for report in record.visible_instances():
                if process_guid is not None and report.process_guid != process_guid:
                    continue
                if app_guid is not None and report.app_guid != app_guid:
                    continue
                found.append(PlacedInstance(record.cell_id, report))
        return found

    def placement_views(self) -> list[CellView]:
        """Fresh cells as the placement function sees them."""
        now = self._monotonic()
        return [
            _view(record)
            for record in self.cells()
            if record.is_fresh(now) and record.heartbeat.state != CellState.LOST
        ]


def _view(record: CellRecord) -> CellView:
    heartbeat = record.heartbeat
    starting = 0
    per_process: dict[str, int] = {}
    for report in record.visible_instances():
        if report.state in LIVE_STATES:
            per_process[report.process_guid] = per_process.get(report.process_guid, 0) + 1
        if report.state in (InstanceState.CLAIMED, InstanceState.STARTING):
            starting += 1
    memory, disk, containers = record.allocated()
    return CellView(
        cell_id=heartbeat.cell_id,
        zone=heartbeat.zone,
        state=heartbeat.state,
        stacks=frozenset(heartbeat.stacks),
        tags=frozenset(heartbeat.tags),
        capacity=Capacity(
            memory_mb=heartbeat.capacity.memory_mb,
            disk_mb=heartbeat.capacity.disk_mb,
            containers=heartbeat.capacity.containers,
        ),
        allocated=Capacity(memory_mb=memory, disk_mb=disk, containers=containers),
        process_instances=per_process,
        starting=starting,
    )
