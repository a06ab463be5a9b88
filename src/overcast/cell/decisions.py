"""Whether a cell takes a command: pure functions of the command and the table (DESIGN.md
section 1.3: a repeated or reordered command is a no-op, never a second copy)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from overcast.bus.messages import InstanceSpec, Resources, StagingSpec, StopInstance
from overcast.cell.table import CellTable, InstanceRecord
from overcast.models.instances import LIVE_STATES, CellState, InstanceState, RejectReason

# Instance guids name directories: nothing that could climb out of one.
_SAFE_GUID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,127}$")


NOTHING = Resources(memory_mb=0, disk_mb=0, containers=0)


@dataclass(frozen=True)
class CellProfile:
    """What the cell offers."""

    stacks: frozenset[str]
    tags: frozenset[str]
    capacity: Resources
    # What stagings in progress hold (they count against the capacity like instances).
    staging: Resources = NOTHING


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: RejectReason | None = None
    detail: str | None = None
    # The instance the command is about, when the cell already holds it (a no-op for start).
    record: InstanceRecord | None = None

    @classmethod
    def reject(cls, reason: RejectReason, detail: str) -> Decision:
        return cls(accepted=False, reason=reason, detail=detail)


def allocated(records: Iterable[InstanceRecord]) -> Resources:
    """What the instances in allocating states hold."""
    holding = [record for record in records if record.allocating]
    return Resources(
        memory_mb=sum(record.spec.memory_mb for record in holding),
        disk_mb=sum(record.spec.disk_mb for record in holding),
        containers=len(holding),
    )


def decide_start(spec: InstanceSpec, table: CellTable, profile: CellProfile) -> Decision:
    """Accept (perhaps as a no-op naming the instance already here) or reject a `start`."""
    if not _SAFE_GUID.match(spec.instance_guid):
        return Decision.reject(RejectReason.INVALID, "instance guid has unsafe characters")
    existing = table.instances.get(spec.instance_guid)
    if existing is not None:
        return Decision(accepted=True, record=existing)
    if table.is_tombstoned(spec.instance_guid):
        return Decision.reject(
            RejectReason.STALE, f"instance {spec.instance_guid} was already stopped here"
        )
    twin = _live_twin(spec, table)
    if twin is not None:
        return Decision(accepted=True, record=twin)
    return _placement(spec, table, profile)


def _live_twin(spec: InstanceSpec, table: CellTable) -> InstanceRecord | None:
    """A live instance of the same process, index and version under another guid."""
    for record in table.instances.values():
        other = record.spec
        if (
            record.state in LIVE_STATES
            and other.process_guid == spec.process_guid
            and other.index == spec.index
            and other.version == spec.version
        ):
            return record
    return None


def _cell_refuses(table: CellTable, profile: CellProfile, stack: str) -> Decision | None:
    if table.state == CellState.DISABLED:
        return Decision.reject(RejectReason.DISABLED, "the cell is disabled")
    if table.state in (CellState.DRAINING, CellState.DRAINED):
        return Decision.reject(RejectReason.DRAINING, "the cell is draining")
    if stack not in profile.stacks:
        offered = ", ".join(sorted(profile.stacks))
        return Decision.reject(RejectReason.WRONG_STACK, f"stack {stack!r} is not one of {offered}")
    return None


def _placement(spec: InstanceSpec, table: CellTable, profile: CellProfile) -> Decision:
    refused = _cell_refuses(table, profile, spec.stack)
    if refused is not None:
        return refused
    missing = sorted(set(spec.tags) - profile.tags)
    if missing:
        return Decision.reject(RejectReason.MISSING_TAGS, f"missing tags: {', '.join(missing)}")
    return _room(spec.memory_mb, spec.disk_mb, used_by(table, profile), profile.capacity)


def used_by(table: CellTable, profile: CellProfile) -> Resources:
    """What the instances hold plus what the stagings in progress hold."""
    instances = allocated(table.instances.values())
    staging = profile.staging
    return Resources(
        memory_mb=instances.memory_mb + staging.memory_mb,
        disk_mb=instances.disk_mb + staging.disk_mb,
        containers=instances.containers + staging.containers,
    )


def _room(memory_mb: int, disk_mb: int, used: Resources, capacity: Resources) -> Decision:
    if used.containers + 1 > capacity.containers:
        return Decision.reject(
            RejectReason.NO_ROOM, f"all {capacity.containers} container slots are taken"
        )
    if used.memory_mb + memory_mb > capacity.memory_mb:
        free = max(0, capacity.memory_mb - used.memory_mb)
        return Decision.reject(
            RejectReason.NO_ROOM, f"needs {memory_mb} MB of memory, {free} MB free"
        )
    if used.disk_mb + disk_mb > capacity.disk_mb:
        free = max(0, capacity.disk_mb - used.disk_mb)
        return Decision.reject(RejectReason.NO_ROOM, f"needs {disk_mb} MB of disk, {free} MB free")
    return Decision(accepted=True)


def decide_stage(
    spec: StagingSpec, table: CellTable, profile: CellProfile, *, in_progress: bool
) -> Decision:
    """Accept or reject a `stage`: a build already staging here is accepted again (a repeated
    command), anything else needs an enabled cell with the stack and the room."""
    if in_progress:
        return Decision(accepted=True)
    if not (_SAFE_GUID.match(spec.build_guid) and _SAFE_GUID.match(spec.app_guid)):
        return Decision.reject(RejectReason.INVALID, "build or app guid has unsafe characters")
    refused = _cell_refuses(table, profile, spec.stack)
    if refused is not None:
        return refused
    return _room(spec.memory_mb, spec.disk_mb, used_by(table, profile), profile.capacity)


def decide_stop(command: StopInstance, table: CellTable) -> Decision:
    """Accept or reject a `stop`; `record` is None when there is nothing to do."""
    record = table.instances.get(command.instance_guid)
    if record is None:
        # Unknown or already stopped: the wanted outcome holds already.
        return Decision(accepted=True)
    if record.spec.version != command.version:
        return Decision.reject(
            RejectReason.STALE,
            f"instance {command.instance_guid} runs version {record.spec.version}, "
            f"not {command.version}",
        )
    if record.state in (InstanceState.STOPPING, InstanceState.STOPPED):
        return Decision(accepted=True)
    return Decision(accepted=True, record=record)
