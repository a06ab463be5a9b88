"""Actual state: instances on cells and the cells themselves (DESIGN.md sections 5 and 8).

The cell that runs an instance is the only writer of its state; the controller and the health
manager see it through heartbeats and instance events."""

from __future__ import annotations

from enum import StrEnum

from overcast.models.lifecycle import TransitionTable


class InstanceState(StrEnum):
    UNCLAIMED = "UNCLAIMED"
    # Accepted by a cell: resources reserved, droplet being fetched and unpacked.
    CLAIMED = "CLAIMED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"
    CRASHED = "CRASHED"
    EVACUATING = "EVACUATING"


INSTANCE_TRANSITIONS: TransitionTable[InstanceState] = {
    InstanceState.UNCLAIMED: frozenset({InstanceState.CLAIMED}),
    # CLAIMED -> CRASHED: the droplet could not be fetched, verified or unpacked.
    InstanceState.CLAIMED: frozenset(
        {InstanceState.STARTING, InstanceState.STOPPING, InstanceState.CRASHED}
    ),
    InstanceState.STARTING: frozenset(
        {InstanceState.RUNNING, InstanceState.STOPPING, InstanceState.CRASHED}
    ),
    InstanceState.RUNNING: frozenset(
        {InstanceState.STOPPING, InstanceState.CRASHED, InstanceState.EVACUATING}
    ),
    InstanceState.STOPPING: frozenset({InstanceState.STOPPED}),
    InstanceState.EVACUATING: frozenset({InstanceState.STOPPED, InstanceState.CRASHED}),
    # A crashed instance stays on record (with its reason) until told to go.
    InstanceState.CRASHED: frozenset({InstanceState.STOPPED}),
    InstanceState.STOPPED: frozenset(),
}

# States that hold the cell's memory, disk and a container slot.
ALLOCATING_STATES = frozenset(
    {
        InstanceState.CLAIMED,
        InstanceState.STARTING,
        InstanceState.RUNNING,
        InstanceState.STOPPING,
        InstanceState.EVACUATING,
    }
)
# States in which an instance counts towards its process's desired instances.
LIVE_STATES = frozenset({InstanceState.CLAIMED, InstanceState.STARTING, InstanceState.RUNNING})
FINAL_STATES = frozenset({InstanceState.STOPPED})
# An instance that ran this long before crashing was healthy: its index's crash count starts
# again at 1 (Diego's rule; the cell counts crashes, the health manager times restarts by them).
CRASH_RESET_SECONDS = 5 * 60.0


def stats_state(state: InstanceState | None) -> str:
    """The four states CF's process stats know."""
    if state in (InstanceState.UNCLAIMED, InstanceState.CLAIMED, InstanceState.STARTING):
        return "STARTING"
    if state in (InstanceState.RUNNING, InstanceState.EVACUATING):
        return "RUNNING"
    if state == InstanceState.CRASHED:
        return "CRASHED"
    return "DOWN"


class ExitReason(StrEnum):
    """Why an instance left RUNNING/STARTING (`instance.event` reason)."""

    STOPPED = "STOPPED"  # asked to stop
    CRASHED = "CRASHED"  # exited, or a liveness check failed, when nobody asked
    START_TIMEOUT = "START_TIMEOUT"  # never became ready within the start timeout
    DOWNLOAD_FAILED = "DOWNLOAD_FAILED"  # droplet fetch, checksum or unpack failed
    OOM = "OOM"
    EVACUATED = "EVACUATED"
    CELL_RESTARTED = "CELL_RESTARTED"  # died while its cell was not watching


class CellState(StrEnum):
    ENABLED = "ENABLED"
    DISABLED = "DISABLED"  # keeps running what it has, takes nothing new
    DRAINING = "DRAINING"
    DRAINED = "DRAINED"
    LOST = "LOST"  # an observer's verdict after missed heartbeats; never self-reported


CELL_TRANSITIONS: TransitionTable[CellState] = {
    CellState.ENABLED: frozenset({CellState.DISABLED, CellState.DRAINING}),
    CellState.DISABLED: frozenset({CellState.ENABLED, CellState.DRAINING}),
    CellState.DRAINING: frozenset({CellState.DRAINED, CellState.ENABLED}),
    CellState.DRAINED: frozenset({CellState.ENABLED}),
    CellState.LOST: frozenset(),
}


class RejectReason(StrEnum):
    """Why a cell refused a `start` (the controller re-places at once)."""

    NO_ROOM = "no_room"
    WRONG_STACK = "wrong_stack"
    MISSING_TAGS = "missing_tags"
    DISABLED = "disabled"
    DRAINING = "draining"
    STALE = "stale"  # the instance was already stopped here: a replayed or reordered command
    INVALID = "invalid"  # the command did not parse
