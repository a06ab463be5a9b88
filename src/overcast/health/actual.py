"""Actual state as the health service hears it: every cell's latest heartbeat, merged with the
instance events that arrived since (overcast.bus.reports), turned into converge()'s inputs.

Times are the health service's own wall clock at arrival, not the cells' clocks: a cell's
liveness is judged by when its heartbeats reach us, whatever its clock says."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from overcast.bus.messages import Heartbeat, InstanceEvent, InstanceReport
from overcast.bus.reports import apply_report, merge_heartbeat
from overcast.health.converge import ActualInstance, CellHealth
from overcast.models.instances import InstanceState


@dataclass
class _Cell:
    heartbeat: Heartbeat
    received_at: float
    instances: dict[str, InstanceReport] = field(default_factory=dict)


class ActualState:
    def __init__(self) -> None:
        self._cells: dict[str, _Cell] = {}
        # Events about cells whose first heartbeat has not arrived yet.
        self._early: dict[str, dict[str, InstanceReport]] = {}
        # Cells judged lost, and the instances of those that came back (a paused cell resumed,
        # a partition healed): their indexes were re-placed meanwhile, so they are the ones
        # to go (converge's `distrusted`).
        self._lost: set[str] = set()
        self._distrusted: set[str] = set()

    def mark_lost(self, cell_ids: Iterable[str]) -> set[str]:
        """Record the verdicts; the cells newly judged lost."""
        newly = set(cell_ids) - self._lost
        self._lost.update(newly)
        return newly

    def last_heard(self, cell_id: str) -> float | None:
        cell = self._cells.get(cell_id)
        return cell.received_at if cell is not None else None

    def observe_heartbeat(self, heartbeat: Heartbeat, received_at: float) -> None:
        cell = self._cells.get(heartbeat.cell_id)
        if cell is None:
            known = self._early.pop(heartbeat.cell_id, {})
            self._cells[heartbeat.cell_id] = _Cell(
                heartbeat, received_at, merge_heartbeat(known, heartbeat)
            )
            return
        cell.received_at = received_at
        if heartbeat.cell_id in self._lost:
            self._lost.discard(heartbeat.cell_id)
            held = {report.instance_guid for report in heartbeat.instances}
            self._distrusted.update(held | set(cell.instances))
        newer_process = heartbeat.started_at > cell.heartbeat.started_at
        if heartbeat.seq < cell.heartbeat.seq and not newer_process:
            return  # overtaken by a newer one: only its arrival counts
        cell.instances = merge_heartbeat(cell.instances, heartbeat)
        cell.heartbeat = heartbeat

    def observe_event(self, event: InstanceEvent) -> None:
        cell = self._cells.get(event.cell_id)
        known = cell.instances if cell is not None else self._early.setdefault(event.cell_id, {})
        apply_report(known, event.instance)

    def report(self, instance_guid: str) -> InstanceReport | None:
        for cell in self._cells.values():
            found = cell.instances.get(instance_guid)
            if found is not None:
                return found
        return None

    def cell_count(self) -> int:
        return len(self._cells)

    def instance_count(self) -> int:
        return sum(len(cell.instances) for cell in self._cells.values())

    def max_heartbeat_interval(self) -> float | None:
        intervals = [cell.heartbeat.interval_seconds for cell in self._cells.values()]
        return max(intervals) if intervals else None

    def cells(self) -> dict[str, CellHealth]:
        return {
            cell_id: CellHealth(
                state=cell.heartbeat.state,
                last_heartbeat_at=cell.received_at,
                heartbeat_interval=cell.heartbeat.interval_seconds,
            )
            for cell_id, cell in self._cells.items()
        }

    def instances(self) -> list[ActualInstance]:
        found = [
            _actual(cell_id, report, report.instance_guid in self._distrusted)
            for cell_id, cell in self._cells.items()
            for report in cell.instances.values()
            if report.state != InstanceState.STOPPED
        ]
        if self._distrusted:
            self._distrusted &= {instance.instance_guid for instance in found}
        return found


def _actual(cell_id: str, report: InstanceReport, distrusted: bool) -> ActualInstance:
    crashed = report.state == InstanceState.CRASHED
    return ActualInstance(
        instance_guid=report.instance_guid,
        process_guid=report.process_guid,
        cell_id=cell_id,
        index=report.index,
        version=report.version,
        state=report.state,
        since=report.since,
        crash_count=report.crash_count,
        crashed_at=report.since if crashed else None,
        crash_reason=(report.detail or report.reason) if crashed else None,
        distrusted=distrusted,
    )
