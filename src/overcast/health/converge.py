"""Convergence: what to start and stop so that actual state meets desired state (DESIGN.md 7).

`converge(desired, actual, cells, now, unknown_since=..., policy=...) -> Plan` is pure: no I/O
and no clock (`now` is Unix seconds from the caller). The health service turns heartbeats into
these inputs, calls it on every event, and carries out the plan.

Inputs
- `desired`: a `DesiredState` snapshot (processes by guid, when it was fetched, and how many
  snapshots have been fetched so far), or None when none could be fetched.
- `actual`: every instance the cells report, as `ActualInstance`.
- `cells`: `CellHealth` by cell id. A cell is lost when it says so or when more than
  `missed_heartbeats_for_lost` (3) heartbeat intervals have passed since its last heartbeat. A
  cell missing from `cells` is taken at its instances' word: there is no evidence it is gone.
- `unknown_since`: for instances of processes absent from desired state, the refresh number of
  the snapshot during which each was first seen so; the plan returns the updated mapping.

Which instance satisfies an index: one at that index, of the desired version, in a live state
(CLAIMED, STARTING, RUNNING), on a cell that is not lost. Of several, one that is not
`distrusted` (its cell was judged lost and came back, after its index was re-placed) is kept
first, then the one furthest along (then the oldest, then the lowest guid); the rest are
DUPLICATE. Instances that are
STOPPING, STOPPED or UNCLAIMED are ignored, as in controller/reconcile.py: they are on their way
out or not on a cell yet. An EVACUATING instance does not satisfy its index (its replacement is
started; it leaves its cell once that runs) and is stopped only when unwanted.

An index nothing satisfies is started, and the start's reason says why it is down:
- CRASHED: a crash record (an instance in CRASHED) of the desired version holds it. The record
  with the longest crash history governs the restart policy (health/restarts.py). Once due, the
  index is started and the record stopped in the same plan (StopReason.CRASHED) so its cell
  forgets it; until then the record stays, so stats still show the index as CRASHED, and the
  index is listed in `waiting` with its due time.
- LOST_WITH_CELL: a live, crashed or evacuating instance at that index, of any version, was
  on a lost cell. It is re-placed at once and never stopped: its cell cannot be reached;
  should the cell come back, the instance is a DUPLICATE then. A crash record on a lost cell
  is lost too (no back-off).
- EVACUATING: its instance is leaving a draining cell.
- MISSING: nothing at all holds it.
The crash record wins over a lost or evacuating duplicate at the same index, so a crash-looping
app cannot skip its back-off by way of an old instance on a dead cell.

Stops, each instance at most once: APP_STOPPED (the process wants 0 instances), EXTRA_INDEX
(index beyond the desired instances), STALE_VERSION, DUPLICATE, CRASHED (replaced, see above),
UNKNOWN (the process is absent from desired state). Nothing on a lost cell is stopped.

Guards (Diego's domain freshness, HM's "never act on what you do not know"):
- Desired state older than `stale_after_refreshes` (2) refresh intervals is STALE: no stops at
  all, so running apps survive a controller or database outage; starts still happen, as they
  destroy nothing.
- Desired state None is UNAVAILABLE: no action at all. Without it no index is known to be
  wanted, so even instances lost with their cell are not re-placed.
- An unknown instance is stopped only once desired state has been refreshed at least
  `unknown_grace_refreshes` (2) times since it was first seen unknown: the snapshot it was first
  seen against, and the next one, may both have been read before its process was created; the
  one after was read after the instance was seen. The caller keeps `plan.unknown_since` and
  passes it back in; it holds only instances still unknown, so it never grows stale.

Ranking: starts run lost with their cell > evacuating > missing > crashed (a crash-looping
app waits behind apps that ran fine until their cell died), then by process guid and index.
Stops go by process guid, index and instance guid; `waiting` by due time. The same input gives
the same plan, whatever the order of `actual`.

Left to the caller: starts it has issued and not yet seen in a heartbeat still look missing, so
it must not issue them twice; a replacement's crash count must carry over from the record it
replaces (StartAction.crash_count, health/restarts.py `crash_count_after`); and after (re)start
it waits for one full round of heartbeats before acting, or everything looks missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from overcast.health.restarts import JITTER_FRACTION, next_restart_at, stable_rng_value
from overcast.models.instances import LIVE_STATES, CellState, InstanceState


class StartReason(StrEnum):
    """Why an index is down; declared in rank order, the most urgent first."""

    LOST_WITH_CELL = "LOST_WITH_CELL"
    EVACUATING = "EVACUATING"
    MISSING = "MISSING"
    CRASHED = "CRASHED"


class StopReason(StrEnum):
    APP_STOPPED = "APP_STOPPED"  # instances == 0; kept apart so events can say the user did it
    EXTRA_INDEX = "EXTRA_INDEX"  # index >= instances: scaled down
    STALE_VERSION = "STALE_VERSION"
    DUPLICATE = "DUPLICATE"  # another instance already satisfies the same index
    CRASHED = "CRASHED"  # a crash record whose replacement starts in the same plan
    UNKNOWN = "UNKNOWN"  # its process is absent from desired state


class Freshness(StrEnum):
    FRESH = "FRESH"
    STALE = "STALE"  # older than the policy allows: no stops
    UNAVAILABLE = "UNAVAILABLE"  # no desired state at all: no action


@dataclass(frozen=True, slots=True)
class DesiredProcess:
    process_guid: str
    app_guid: str
    # The process's desired-state version; instances built from another one are replaced.
    version: str
    # 0 when the app is stopped.
    instances: int

    def __post_init__(self) -> None:
        if self.instances < 0:
            raise ValueError(f"negative instances for process {self.process_guid!r}")


@dataclass(frozen=True, slots=True)
class DesiredState:
    processes: Mapping[str, DesiredProcess]
    # Unix time the snapshot was read.
    fetched_at: float
    # How many snapshots the caller has fetched, this one included: the clock that unknown
    # instances are timed by.
    refreshes: int

    def __post_init__(self) -> None:
        if self.refreshes < 1:
            raise ValueError("a desired-state snapshot is at least the first refresh")


@dataclass(frozen=True, slots=True)
class CellHealth:
    state: CellState
    # Unix time the last heartbeat arrived, and the interval the cell announced.
    last_heartbeat_at: float
    heartbeat_interval: float


@dataclass(frozen=True, slots=True)
class ActualInstance:
    instance_guid: str
    process_guid: str
    cell_id: str
    index: int
    version: str
    state: InstanceState
    # Unix time of the last state change, by the cell's clock: restart times computed from it
    # are off by the skew between that clock and the caller's, seconds at most with NTP.
    since: float
    # Consecutive crashes of this index, the latest included (see health/restarts.py).
    crash_count: int = 0
    # When it last crashed; `since` stands in when None, being the crash time while CRASHED.
    crashed_at: float | None = None
    crash_reason: str | None = None
    # It was on a cell when that cell was judged lost, and the cell came back: its index was
    # re-placed meanwhile, so of two holders this one goes (whatever their ages).
    distrusted: bool = False


@dataclass(frozen=True, slots=True)
class ConvergePolicy:
    # Seconds between the caller's fetches of desired state.
    desired_refresh_interval: float = 30.0
    # Desired state older than this many refresh intervals is STALE.
    stale_after_refreshes: float = 2.0
    missed_heartbeats_for_lost: int = 3
    unknown_grace_refreshes: int = 2
    jitter_fraction: float = JITTER_FRACTION

    def __post_init__(self) -> None:
        if self.desired_refresh_interval <= 0 or self.stale_after_refreshes <= 0:
            raise ValueError("desired state must be allowed some age")
        if self.missed_heartbeats_for_lost < 1:
            raise ValueError("a cell is lost after one missed heartbeat at the soonest")
        # 0 would stop an instance of an app created after the snapshot was read.
        if self.unknown_grace_refreshes < 1:
            raise ValueError("unknown instances get at least one refresh of grace")
        if not 0.0 <= self.jitter_fraction < 1.0:
            raise ValueError(f"jitter_fraction {self.jitter_fraction} is not in [0, 1)")


DEFAULT_POLICY = ConvergePolicy()


@dataclass(frozen=True, slots=True)
class StartAction:
    process_guid: str
    app_guid: str
    # The desired version the start is computed from (a command for another one is stale).
    version: str
    index: int
    reason: StartReason
    # Unix time from which the start is due: `now`, or a crashed index's restart time.
    not_before: float
    # The instance whose index this takes over: the crash record, the lost or the evacuating
    # instance; None when the index was simply missing.
    replaces: str | None = None
    # The crash count the replacement inherits (the crash record's; 0 for other reasons).
    crash_count: int = 0


@dataclass(frozen=True, slots=True)
class StopAction:
    instance_guid: str
    cell_id: str
    process_guid: str
    index: int
    reason: StopReason


@dataclass(frozen=True, slots=True)
class WaitingRestart:
    """A crashed index whose restart is not due yet."""

    process_guid: str
    index: int
    # The crash record that stays until the restart.
    instance_guid: str
    crash_count: int
    restart_at: float


@dataclass(frozen=True, slots=True)
class Plan:
    freshness: Freshness
    # Ranked (see the module docstring); each (process, index) at most once.
    starts: tuple[StartAction, ...]
    stops: tuple[StopAction, ...]
    waiting: tuple[WaitingRestart, ...]
    # Cells judged lost at `now`, sorted: the caller records the verdict (CellState.LOST).
    lost_cells: tuple[str, ...]
    # Instance guid -> refresh number first seen unknown; pass it to the next call.
    unknown_since: Mapping[str, int]

    @property
    def empty(self) -> bool:
        """Nothing to do now (restarts may still be waiting)."""
        return not self.starts and not self.stops

    @property
    def next_restart_at(self) -> float | None:
        """When the earliest waiting restart falls due: the caller's next wake-up."""
        return self.waiting[0].restart_at if self.waiting else None


# States that hold a cell slot or an index, and so may be stopped.
_STOPPABLE = LIVE_STATES | {InstanceState.CRASHED, InstanceState.EVACUATING}
# Which of several live instances at one index to keep: the one furthest along.
_KEEP_RANK = {InstanceState.RUNNING: 0, InstanceState.STARTING: 1, InstanceState.CLAIMED: 2}
_START_RANK = {reason: rank for rank, reason in enumerate(StartReason)}
_NOTHING_UNKNOWN: Mapping[str, int] = MappingProxyType({})


def desired_freshness(
    desired: DesiredState | None, now: float, policy: ConvergePolicy = DEFAULT_POLICY
) -> Freshness:
    if desired is None:
        return Freshness.UNAVAILABLE
    max_age = policy.stale_after_refreshes * policy.desired_refresh_interval
    return Freshness.STALE if now - desired.fetched_at > max_age else Freshness.FRESH


def lost_cells(
    cells: Mapping[str, CellHealth], now: float, policy: ConvergePolicy = DEFAULT_POLICY
) -> frozenset[str]:
    return frozenset(
        cell_id
        for cell_id, cell in cells.items()
        if cell.state is CellState.LOST
        or now - cell.last_heartbeat_at
        > policy.missed_heartbeats_for_lost * cell.heartbeat_interval
    )


def converge(
    desired: DesiredState | None,
    actual: Iterable[ActualInstance],
    cells: Mapping[str, CellHealth],
    now: float,
    *,
    unknown_since: Mapping[str, int] = _NOTHING_UNKNOWN,
    policy: ConvergePolicy = DEFAULT_POLICY,
) -> Plan:
    """The plan that brings `actual` to `desired` (see the module docstring)."""
    lost = lost_cells(cells, now, policy)
    freshness = desired_freshness(desired, now, policy)
    if desired is None:
        return Plan(freshness, (), (), (), tuple(sorted(lost)), dict(unknown_since))
    planner = _Planner(now, policy, lost, may_stop=freshness is Freshness.FRESH)
    by_process = _group_by_process(actual)
    for process_guid, want in desired.processes.items():
        planner.plan_process(want, by_process.pop(process_guid, []))
    tracked = planner.plan_unknown(by_process.values(), desired.refreshes, unknown_since)
    return planner.plan(freshness, tracked)


def _group_by_process(actual: Iterable[ActualInstance]) -> dict[str, list[ActualInstance]]:
    groups: dict[str, list[ActualInstance]] = {}
    for instance in actual:
        group = groups.get(instance.process_guid)
        if group is None:
            groups[instance.process_guid] = [instance]
        else:
            group.append(instance)
    return groups


class _Planner:
    """Collects the actions of one converge() call, process by process."""

    def __init__(
        self, now: float, policy: ConvergePolicy, lost: frozenset[str], *, may_stop: bool
    ) -> None:
        self._now = now
        self._policy = policy
        self._lost = lost
        self._may_stop = may_stop
        self._starts: list[StartAction] = []
        self._stops: list[StopAction] = []
        self._waiting: list[WaitingRestart] = []

    def plan_process(self, want: DesiredProcess, instances: list[ActualInstance]) -> None:
        # Index -> the live instance that satisfies it; more live ones at a taken index.
        kept: dict[int, ActualInstance] = {}
        rivals: list[ActualInstance] = []
        crashed: dict[int, list[ActualInstance]] = {}
        # Index -> the guid of an instance that held it and is going (lost, or evacuating).
        lost: dict[int, str] = {}
        evacuating: dict[int, str] = {}
        # This loop sees every instance of the fleet: locals and no calls on the common path.
        lost_cells, wanted, version = self._lost, want.instances, want.version
        for instance in instances:
            state = instance.state
            if state not in _STOPPABLE:
                continue
            if instance.cell_id in lost_cells:
                _remember_lowest(lost, instance)
                continue
            index = instance.index
            if not (0 <= index < wanted and instance.version == version):
                self._stop(instance, _why_unwanted(want, instance))
            elif state is InstanceState.CRASHED:
                crashed.setdefault(index, []).append(instance)
            elif state is InstanceState.EVACUATING:
                _remember_lowest(evacuating, instance)
            elif index in kept:
                rivals.append(instance)
            else:
                kept[index] = instance
        if rivals:
            self._stop_duplicates(kept, rivals)
        if len(kept) < wanted:
            self._start_down_indices(want, kept, crashed, lost, evacuating)
        # What is left are crash records at indices a live instance holds: moot.
        for records in crashed.values():
            self._stop_all(records, StopReason.DUPLICATE)

    def _stop_duplicates(
        self, kept: dict[int, ActualInstance], rivals: list[ActualInstance]
    ) -> None:
        contenders: dict[int, list[ActualInstance]] = {}
        for rival in rivals:
            contenders.setdefault(rival.index, [kept[rival.index]]).append(rival)
        for holders in contenders.values():
            _keeper, *extra = sorted(holders, key=_keep_order)
            self._stop_all(extra, StopReason.DUPLICATE)

    def _start_down_indices(
        self,
        want: DesiredProcess,
        kept: dict[int, ActualInstance],
        crashed: dict[int, list[ActualInstance]],
        lost: dict[int, str],
        evacuating: dict[int, str],
    ) -> None:
        """Plans every index in range that no live instance satisfies; takes the crash
        records it settles out of `crashed`."""
        for index in range(want.instances):
            if index in kept:
                continue
            records = crashed.pop(index, None)
            if records:
                self._restart_crashed(want, index, records)
            elif index in lost:
                self._start(want, index, StartReason.LOST_WITH_CELL, replaces=lost[index])
            elif index in evacuating:
                self._start(want, index, StartReason.EVACUATING, replaces=evacuating[index])
            else:
                self._start(want, index, StartReason.MISSING)

    def plan_unknown(
        self,
        groups: Iterable[list[ActualInstance]],
        refreshes: int,
        unknown_since: Mapping[str, int],
    ) -> dict[str, int]:
        """Stops unknown instances past their grace; returns who is unknown since when."""
        tracked: dict[str, int] = {}
        for instances in groups:
            for instance in instances:
                if instance.state not in _STOPPABLE:
                    continue
                first_seen = unknown_since.get(instance.instance_guid, refreshes)
                tracked[instance.instance_guid] = first_seen
                past_grace = refreshes - first_seen >= self._policy.unknown_grace_refreshes
                if past_grace and instance.cell_id not in self._lost:
                    self._stop(instance, StopReason.UNKNOWN)
        return tracked

    def plan(self, freshness: Freshness, unknown_since: dict[str, int]) -> Plan:
        self._starts.sort(key=lambda s: (_START_RANK[s.reason], s.process_guid, s.index))
        self._stops.sort(key=lambda s: (s.process_guid, s.index, s.instance_guid))
        self._waiting.sort(key=lambda w: (w.restart_at, w.process_guid, w.index))
        return Plan(
            freshness=freshness,
            starts=tuple(self._starts),
            stops=_first_stop_of_each(self._stops),
            waiting=tuple(self._waiting),
            lost_cells=tuple(sorted(self._lost)),
            unknown_since=unknown_since,
        )

    def _restart_crashed(
        self, want: DesiredProcess, index: int, records: list[ActualInstance]
    ) -> None:
        record, *older = sorted(records, key=_crash_order)
        self._stop_all(older, StopReason.DUPLICATE)
        restart_at = self._restart_at(record)
        if restart_at > self._now:
            self._waiting.append(
                WaitingRestart(
                    want.process_guid, index, record.instance_guid, record.crash_count, restart_at
                )
            )
            return
        self._start(
            want,
            index,
            StartReason.CRASHED,
            not_before=restart_at,
            replaces=record.instance_guid,
            crash_count=record.crash_count,
        )
        self._stop(record, StopReason.CRASHED)

    def _restart_at(self, record: ActualInstance) -> float:
        crashed_at = record.since if record.crashed_at is None else record.crashed_at
        # Keyed by the crash, so its jitter, and its restart time, is the same on every pass.
        rng_value = stable_rng_value(f"{record.instance_guid}/{record.crash_count}")
        return next_restart_at(
            crashed_at,
            max(record.crash_count, 0),
            rng_value,
            jitter_fraction=self._policy.jitter_fraction,
        )

    def _start(
        self,
        want: DesiredProcess,
        index: int,
        reason: StartReason,
        *,
        not_before: float | None = None,
        replaces: str | None = None,
        crash_count: int = 0,
    ) -> None:
        self._starts.append(
            StartAction(
                process_guid=want.process_guid,
                app_guid=want.app_guid,
                version=want.version,
                index=index,
                reason=reason,
                not_before=self._now if not_before is None else not_before,
                replaces=replaces,
                crash_count=crash_count,
            )
        )

    def _stop(self, instance: ActualInstance, reason: StopReason) -> None:
        if self._may_stop:
            self._stops.append(
                StopAction(
                    instance.instance_guid,
                    instance.cell_id,
                    instance.process_guid,
                    instance.index,
                    reason,
                )
            )

    def _stop_all(self, instances: Iterable[ActualInstance], reason: StopReason) -> None:
        for instance in instances:
            self._stop(instance, reason)


def _why_unwanted(want: DesiredProcess, instance: ActualInstance) -> StopReason:
    """Why an instance out of range or of another version should not exist at all."""
    if want.instances == 0:
        return StopReason.APP_STOPPED
    # A negative index cannot come from a valid start command; treat it as out of range.
    if not 0 <= instance.index < want.instances:
        return StopReason.EXTRA_INDEX
    return StopReason.STALE_VERSION


def _first_stop_of_each(stops: list[StopAction]) -> tuple[StopAction, ...]:
    # Only a guid reported twice (by two cells, or for two processes) could be stopped twice.
    seen: set[str] = set()
    unique = []
    for stop in stops:
        if stop.instance_guid not in seen:
            seen.add(stop.instance_guid)
            unique.append(stop)
    return tuple(unique)


def _remember_lowest(holders: dict[int, str], instance: ActualInstance) -> None:
    # The lowest guid, so that `replaces` does not depend on the order of the input.
    known = holders.get(instance.index)
    if known is None or instance.instance_guid < known:
        holders[instance.index] = instance.instance_guid


def _keep_order(instance: ActualInstance) -> tuple[bool, int, float, str]:
    # Never one from a cell that was lost, if there is another; then the one furthest along,
    # then the oldest (the longest proven), then the lowest guid so the choice is total.
    return (
        instance.distrusted,
        _KEEP_RANK[instance.state],
        instance.since,
        instance.instance_guid,
    )


def _crash_order(record: ActualInstance) -> tuple[int, float, str]:
    # The longest crash history first: keeping a shorter one would cut the back-off short.
    crashed_at = record.since if record.crashed_at is None else record.crashed_at
    return (-record.crash_count, -crashed_at, record.instance_guid)
