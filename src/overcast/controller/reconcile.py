"""What one process needs started and stopped right now, from its desired and actual state
(DESIGN.md section 7).

A pure function: no I/O, no clock. It covers scaling, version changes and duplicates only.
Crashed instances are left in place and count as present: restarting them (with back-off) is
the health manager's job, as is replacing instances lost with their cell; their plans add to
this one.

Which instance satisfies an index: one at that index, with the desired version, in a live
state (CLAIMED, STARTING, RUNNING) or CRASHED. The rest of the states are ignored, neither
satisfying an index nor being stopped here:
- STOPPING and STOPPED: already on their way out; a second stop would only be noise.
- UNCLAIMED: never on a cell, so there is nothing to stop.
- EVACUATING: it leaves its draining cell by itself once a replacement runs, and it does not
  count towards the desired instances (it is not in LIVE_STATES), so its index is started
  elsewhere. It is stopped only when it is out of range or of another version, since then no
  replacement will ever be wanted and it should not go on serving.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from overcast.models.instances import LIVE_STATES, InstanceState


@dataclass(frozen=True)
class DesiredProcess:
    process_guid: str
    # The process's desired-state version; instances built from another one are replaced.
    version: str
    # 0 when the app is stopped.
    instances: int

    def __post_init__(self) -> None:
        if self.instances < 0:
            raise ValueError(f"negative instances for process {self.process_guid!r}")


@dataclass(frozen=True)
class ActualInstance:
    instance_guid: str
    cell_id: str
    index: int
    version: str
    state: InstanceState
    # Unix time of the instance's last state change (from its cell, not read here).
    since: float


class StopReason(StrEnum):
    # The app is stopped (instances == 0). Kept apart from SCALED_DOWN so that events, logs
    # and the stop command can say the user stopped the app rather than scaled it.
    APP_STOPPED = "APP_STOPPED"
    SCALED_DOWN = "SCALED_DOWN"  # index >= instances
    STALE_VERSION = "STALE_VERSION"  # built from another desired-state version
    DUPLICATE = "DUPLICATE"  # another instance already satisfies the same index


@dataclass(frozen=True)
class Stop:
    instance: ActualInstance
    reason: StopReason


@dataclass(frozen=True)
class ReconcilePlan:
    # Indices to start, ascending, each once.
    starts: tuple[int, ...]
    # In index order, then instance guid, so the plan is the same for the same input.
    stops: tuple[Stop, ...]

    @property
    def empty(self) -> bool:
        return not self.starts and not self.stops


# States that hold an index for the desired version; CRASHED holds it until the health
# manager restarts or gives up on it.
_PRESENT = LIVE_STATES | {InstanceState.CRASHED}
# States stopped when out of range or of another version (see the module docstring).
_STOPPABLE = _PRESENT | {InstanceState.EVACUATING}
# Which of several instances at one index to keep: the one furthest along, since stopping it
# would throw away the most work; CRASHED last, as a live instance makes its record moot.
_KEEP_RANK = {
    InstanceState.RUNNING: 0,
    InstanceState.STARTING: 1,
    InstanceState.CLAIMED: 2,
    InstanceState.CRASHED: 3,
}


def reconcile(desired: DesiredProcess, actual: Iterable[ActualInstance]) -> ReconcilePlan:
    """Starts for every index in [0, instances) with no satisfying instance; stops for
    instances out of range, of another version, or duplicating a kept one."""
    stops: list[Stop] = []
    by_index: defaultdict[int, list[ActualInstance]] = defaultdict(list)
    for instance in actual:
        if instance.state not in _STOPPABLE:
            continue
        reason = _unwanted(desired, instance)
        if reason is not None:
            stops.append(Stop(instance, reason))
        elif instance.state in _PRESENT:
            by_index[instance.index].append(instance)
    for candidates in by_index.values():
        _keeper, *extra = sorted(candidates, key=_keep_order)
        stops.extend(Stop(instance, StopReason.DUPLICATE) for instance in extra)
    starts = tuple(index for index in range(desired.instances) if index not in by_index)
    stops.sort(key=lambda stop: (stop.instance.index, stop.instance.instance_guid))
    return ReconcilePlan(starts=starts, stops=tuple(stops))


def _unwanted(desired: DesiredProcess, instance: ActualInstance) -> StopReason | None:
    """Why the instance should not exist at all, whatever else runs; None when it may."""
    if desired.instances == 0:
        return StopReason.APP_STOPPED
    # A negative index cannot come from a valid start command; treat it as out of range.
    if not 0 <= instance.index < desired.instances:
        return StopReason.SCALED_DOWN
    if instance.version != desired.version:
        return StopReason.STALE_VERSION
    return None


def _keep_order(instance: ActualInstance) -> tuple[int, float, str]:
    # Then the oldest (the longest proven), then the lowest guid so the choice is total.
    return (_KEEP_RANK[instance.state], instance.since, instance.instance_guid)
