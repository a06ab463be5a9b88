"""The controller's side of the health manager (DESIGN.md sections 1 and 7).

The health service keeps actual state from the cells' heartbeats, runs `converge()` and asks
the controller to act. The controller stays the only writer of desired state and checks every
request against it before it commands a cell:

- `desired()` hands the service a bulk snapshot of desired state to converge against.
- `act()` carries out what the service asks, where desired state agrees:
  - a start must be for a process whose app is started with a droplet, at an index below its
    instances, not already held by a live instance of the desired version on a reachable cell
    (`Scheduler.start_index` checks it again under the process's lock);
  - a stop must name an instance the cell directory knows, on the cell and of the process the
    request says, on a cell that is not lost; and an instance that alone holds an index desired
    state wants is never stopped. What is left to stop: crash records, duplicates, instances out
    of range or of another version, and those of processes nobody wants any more;
  - a crash is recorded as an audit event, once per instance and crash count;
  - the restarts waiting for their back-off and the service's status are kept for the process
    stats and `GET /v3/x/health`.

So a faulty health service can at worst start what should run, stop what need not, and write
crash events: it cannot scale, start or stop an app.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from overcast.bus.messages import InstanceReport
from overcast.controller.access import Caller, forbid
from overcast.controller.base import UseCase
from overcast.controller.cells import CellDirectory, PlacedInstance
from overcast.controller.events import record_as
from overcast.controller.scheduler import (
    Scheduler,
    StartOutcome,
    desired_instances,
    start_refusal,
)
from overcast.core.logging import get_logger
from overcast.models.instances import LIVE_STATES, CellState, InstanceState
from overcast.models.resources import Actor, App, Process

log = get_logger(__name__)

T = TypeVar("T")

# The most entries of each list in one request, and of keys in its status.
MAX_ITEMS = 10_000
MAX_STATUS_KEYS = 100
# The health service reports at least this often; silent for MISSED_REPORTS intervals, its
# state is unknown.
REPORT_INTERVAL_SECONDS = 5.0
MISSED_REPORTS = 3
CRASH_EVENT = "audit.app.process.crash"
# (instance, crash count) pairs remembered so that a crash sent again is not recorded twice.
REMEMBERED_CRASHES = 100_000
# Processes whose last crashes are remembered for the stats.
REMEMBERED_CRASHED_PROCESSES = 10_000
# Distinct reasons a counter keeps; the rest count as "other" (reasons are the service's text).
MAX_COUNTED_REASONS = 50
# Process guids per bulk read (SQL parameter limits), and stops sent to cells at once.
READ_CHUNK = 500
STOP_CONCURRENCY = 100
# Processes whose starts are made at once (each process's own starts go one after another).
START_CONCURRENCY = 50

# Why a stop is not made (plain strings: the API shows them).
UNKNOWN_INSTANCE = "unknown instance"
INSTANCE_MISMATCH = "not that cell's or process's instance"
CELL_LOST = "cell lost"
STILL_NEEDED = "still needed"
REPLACEMENT_NOT_STARTED = "replacement not started"
CELL_REFUSED = "cell refused or did not answer"


# --- requests ----------------------------------------------------------------------------------

Guid = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
UnixTime = Annotated[float, Field(ge=0, allow_inf_nan=False)]
StatusValue = (
    int
    | Annotated[float, Field(allow_inf_nan=False)]
    | Annotated[str, StringConstraints(max_length=1024)]
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class StartRequest(_Body):
    process_guid: Guid
    index: Count
    # Why the index is down (converge's StartReason: CRASHED, LOST_WITH_CELL, ...).
    reason: Reason
    # The crash count the replacement inherits, so back-off grows across replacements.
    crash_count: Count = 0
    # The instance whose index this takes over, for the log.
    replaces: Guid | None = None
    # The process version the start was computed from, when the service says: a start
    # computed from another one is stale.
    version: Guid | None = None


class StopRequest(_Body):
    instance_guid: Guid
    cell_id: Guid
    process_guid: Guid
    reason: Reason


class CrashReport(_Body):
    instance_guid: Guid
    process_guid: Guid
    app_guid: Guid
    index: Count
    cell_id: Guid
    reason: Reason
    # The cell's words ("exited with status 1"), free of environment values.
    detail: Annotated[str, StringConstraints(max_length=4096)] | None = None
    exit_status: int | None = None
    crash_count: Count
    crashed_at: UnixTime


class WaitingRestart(_Body):
    process_guid: Guid
    index: Count
    # The crash record that holds the index until the restart.
    instance_guid: Guid
    crash_count: Count
    restart_at: UnixTime


class HealthActions(_Body):
    starts: list[StartRequest] = Field(default_factory=list, max_length=MAX_ITEMS)
    stops: list[StopRequest] = Field(default_factory=list, max_length=MAX_ITEMS)
    crashes: list[CrashReport] = Field(default_factory=list, max_length=MAX_ITEMS)
    # Replaced by each request: what waits now, and the service's own figures.
    waiting: list[WaitingRestart] = Field(default_factory=list, max_length=MAX_ITEMS)
    status: dict[Annotated[str, StringConstraints(min_length=1, max_length=255)], StatusValue] = (
        Field(default_factory=dict, max_length=MAX_STATUS_KEYS)
    )


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartResult:
    process_guid: str
    index: int
    accepted: bool
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class StopResult:
    instance_guid: str
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True)
class HealthActionResults:
    starts: list[StartResult]
    stops: list[StopResult]


@dataclass(frozen=True)
class CrashInfo:
    """What the stats show of a crashed index beyond its cell's report."""

    instance_guid: str
    crash_count: int
    reason: str | None
    # Unix time the health service will restart it; None when not waiting (yet).
    next_restart_at: float | None


@dataclass
class _Counters:
    starts_accepted: Counter[str] = field(default_factory=Counter)
    starts_refused: Counter[str] = field(default_factory=Counter)
    stops_accepted: Counter[str] = field(default_factory=Counter)
    stops_refused: Counter[str] = field(default_factory=Counter)
    crashes_recorded: int = 0
    crashes_repeated: int = 0
    crashes_ignored: int = 0


def _bump(counter: Counter[str], reason: str) -> None:
    counter[reason if reason in counter or len(counter) < MAX_COUNTED_REASONS else "other"] += 1


# --- pure checks -------------------------------------------------------------------------------


def still_needed(report: InstanceReport, wanted: int, version: str, other_holders: int) -> bool:
    """Whether stopping the instance would leave an index that desired state wants (`wanted`
    instances of `version`) with no live instance: it is live, in range, of that version, and
    no other live instance holds its index."""
    return (
        report.state in LIVE_STATES
        and 0 <= report.index < wanted
        and report.version == version
        and other_holders == 0
    )


def keeps_crashed_index(
    report: InstanceReport, wanted: int, version: str, other_holders: int
) -> bool:
    """Whether the instance is the crash record of an index that desired state wants (`wanted`
    instances of `version`) and nothing else holds, live or crashed. Stopped before its
    replacement is started, the index would lose its crash count (the back-off would begin
    again) and look missing to the next scheduling run, which starts it at once."""
    return (
        report.state == InstanceState.CRASHED
        and 0 <= report.index < wanted
        and report.version == version
        and other_holders == 0
    )


@dataclass
class _ActualView:
    """The cell directory at one moment, indexed for checking many stops."""

    by_guid: dict[str, PlacedInstance]
    lost_cells: frozenset[str]
    # (process guid, index, version) -> guids of the live instances holding it, lost cells aside.
    holders: dict[tuple[str, int, str], set[str]]
    # The same for the crash records.
    crash_records: dict[tuple[str, int, str], set[str]]

    @classmethod
    def of(cls, directory: CellDirectory) -> _ActualView:
        lost = frozenset(
            record.cell_id
            for record in directory.cells()
            if directory.cell_state(record) == CellState.LOST
        )
        by_guid: dict[str, PlacedInstance] = {}
        holders: dict[tuple[str, int, str], set[str]] = {}
        crash_records: dict[tuple[str, int, str], set[str]] = {}
        for placed in directory.instances():
            report = placed.report
            by_guid[report.instance_guid] = placed
            if placed.cell_id in lost:
                continue
            key = (report.process_guid, report.index, report.version)
            if report.state in LIVE_STATES:
                holders.setdefault(key, set()).add(report.instance_guid)
            elif report.state == InstanceState.CRASHED:
                crash_records.setdefault(key, set()).add(report.instance_guid)
        return cls(by_guid=by_guid, lost_cells=lost, holders=holders, crash_records=crash_records)


# --- the use case ------------------------------------------------------------------------------


class HealthManagement(UseCase):
    def __init__(self, *parts: object, scheduler: Scheduler, directory: CellDirectory) -> None:
        super().__init__(*parts)  # type: ignore[arg-type]
        self.scheduler = scheduler
        self.directory = directory
        # One request at a time: the stop checks and the crash dedupe assume it.
        self._acting = asyncio.Lock()
        self._counters = _Counters()
        self._recorded_crashes: OrderedDict[tuple[str, int], None] = OrderedDict()
        # Process guid -> index -> its latest crash reported.
        self._last_crashes: OrderedDict[str, dict[int, CrashReport]] = OrderedDict()
        self._waiting: list[WaitingRestart] = []
        self._waiting_by_process: dict[str, dict[int, WaitingRestart]] = {}
        self._status: dict[str, int | float | str] = {}
        self._reported_at: datetime | None = None
        self._reported_monotonic: float | None = None

    @staticmethod
    def authorize(caller: Caller) -> None:
        """Only admins (the health service's client among them) talk health."""
        if not caller.admin:
            raise forbid()

    # --- desired state ----------------------------------------------------------------------

    async def desired(self) -> dict[str, Any]:
        """Every process with its desired instances (0 unless its app is started and has a
        droplet) and version, from one read transaction."""
        # Taken before the read, so the snapshot is at least as new as it says.
        generated_at = self.clock.now().timestamp()
        async with self.store.read() as tx:
            # Processes first: an app is created before its processes, so every process read
            # finds its app, unless the app was deleted since (and then it wants nothing).
            processes = await tx.processes.list_all({})
            apps = {app.guid: app for app in await tx.apps.list_all({})}
        return {
            "generated_at": generated_at,
            "processes": [
                _desired_entry(process, apps.get(process.app_guid)) for process in processes
            ],
        }

    # --- acting -----------------------------------------------------------------------------

    async def act(self, request: HealthActions) -> HealthActionResults:
        async with self._acting:
            self._note_report(request)
            wanted = {item.process_guid for item in request.starts}
            wanted |= {item.process_guid for item in request.stops}
            wanted |= {item.process_guid for item in request.crashes}
            known = await self._load(wanted)
            # Starts before stops: a crash record keeps holding its index until its
            # replacement is on a cell, so no scheduling run starts the index meanwhile.
            starts = await self._start_all(request.starts, known)
            started = {(result.process_guid, result.index) for result in starts if result.accepted}
            stops = await self._stop_all(request.stops, known, started)
            await self._record_crashes(request.crashes, known)
        log.info(
            "health.acted",
            starts=len(starts),
            started=sum(1 for result in starts if result.accepted),
            stops=len(stops),
            stopped=sum(1 for result in stops if result.accepted),
            crashes=len(request.crashes),
            waiting=len(request.waiting),
        )
        return HealthActionResults(starts=starts, stops=stops)

    def _note_report(self, request: HealthActions) -> None:
        self._reported_at = self.clock.now()
        self._reported_monotonic = self.clock.monotonic()
        self._status = dict(request.status)
        self._waiting = list(request.waiting)
        self._waiting_by_process = {}
        for item in request.waiting:
            self._waiting_by_process.setdefault(item.process_guid, {})[item.index] = item
        for crash in request.crashes:
            self._remember_crash(crash)

    async def _load(self, process_guids: set[str]) -> dict[str, tuple[App, Process]]:
        """The processes (with their apps) that exist of `process_guids`, in one read."""
        found: dict[str, tuple[App, Process]] = {}
        async with self.store.read() as tx:
            for chunk in _chunks(sorted(process_guids), READ_CHUNK):
                processes = await tx.processes.list_all({"guids": chunk})
                app_guids = sorted({process.app_guid for process in processes})
                apps = {app.guid: app for app in await tx.apps.list_all({"guids": app_guids})}
                for process in processes:
                    app = apps.get(process.app_guid)
                    if app is not None:
                        found[process.guid] = (app, process)
        return found

    # --- starts -----------------------------------------------------------------------------

    async def _start_all(
        self, items: Sequence[StartRequest], known: dict[str, tuple[App, Process]]
    ) -> list[StartResult]:
        """Every start, in the request's order per process, different processes at once: a
        cell that does not answer costs the RPC timeout, and must hold up only the starts of
        its own process, not every restart the request asks for."""
        by_process: dict[str, list[int]] = {}
        for position, item in enumerate(items):
            by_process.setdefault(item.process_guid, []).append(position)
        results: dict[int, StartResult] = {}
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def start_in_order(positions: list[int]) -> None:
            async with gate:
                for position in positions:
                    results[position] = await self._start(items[position], known)

        await asyncio.gather(*(start_in_order(positions) for positions in by_process.values()))
        return [results[position] for position in range(len(items))]

    async def _start(
        self, item: StartRequest, known: dict[str, tuple[App, Process]]
    ) -> StartResult:
        # Refusals by desired state alone cost no further read; start_index checks again,
        # under the process's lock, and checks the cells.
        refusal = start_refusal(known.get(item.process_guid), item.index, version=item.version)
        if refusal is not None:
            outcome = StartOutcome(accepted=False, reason=refusal)
        else:
            outcome = await self.scheduler.start_index(
                item.process_guid, item.index, crash_count=item.crash_count, version=item.version
            )
        if outcome.accepted:
            _bump(self._counters.starts_accepted, item.reason)
            log.info(
                "health.start",
                process_guid=item.process_guid,
                index=item.index,
                reason=item.reason,
                crash_count=item.crash_count,
                replaces=item.replaces,
            )
        else:
            _bump(self._counters.starts_refused, outcome.reason or "")
        return StartResult(
            process_guid=item.process_guid,
            index=item.index,
            accepted=outcome.accepted,
            reason=outcome.reason,
            detail=outcome.detail,
        )

    # --- stops ------------------------------------------------------------------------------

    async def _stop_all(
        self,
        items: Sequence[StopRequest],
        known: dict[str, tuple[App, Process]],
        started: set[tuple[str, int]],
    ) -> list[StopResult]:
        """`started`: the (process, index) pairs whose start this request made."""
        view = _ActualView.of(self.directory)
        refusals: list[str | None] = []
        # Instance guid -> (stop reason, the instance): each sent once, however often asked.
        to_send: dict[str, tuple[str, PlacedInstance]] = {}
        for item in items:
            placed = view.by_guid.get(item.instance_guid)
            if placed is None:
                refusals.append(UNKNOWN_INSTANCE)
                continue
            refusal = self._stop_refusal(item, placed, known, view, started)
            refusals.append(refusal)
            # A stopping instance is on its way out: accepted, nothing to send.
            if refusal is None and placed.report.state != InstanceState.STOPPING:
                to_send.setdefault(item.instance_guid, (item.reason, placed))
        sent = await self._send_stops(list(to_send.values()))
        results = []
        for item, refusal in zip(items, refusals, strict=True):
            if refusal is None and not sent.get(item.instance_guid, True):
                refusal = CELL_REFUSED
            if refusal is None:
                _bump(self._counters.stops_accepted, item.reason)
            else:
                _bump(self._counters.stops_refused, refusal)
            results.append(StopResult(item.instance_guid, accepted=refusal is None, reason=refusal))
        return results

    async def _send_stops(self, stops: Sequence[tuple[str, PlacedInstance]]) -> dict[str, bool]:
        """Instance guid -> whether its cell took the stop; a bounded number at once."""
        sent: dict[str, bool] = {}
        for batch in _chunks(stops, STOP_CONCURRENCY):
            outcomes = await asyncio.gather(
                *(
                    self.scheduler.stop_instance(
                        placed.cell_id, placed.report.instance_guid, placed.report.version, reason
                    )
                    for reason, placed in batch
                )
            )
            for (_, placed), stopped in zip(batch, outcomes, strict=True):
                sent[placed.report.instance_guid] = stopped
        return sent

    @staticmethod
    def _stop_refusal(
        item: StopRequest,
        placed: PlacedInstance,
        known: dict[str, tuple[App, Process]],
        view: _ActualView,
        started: set[tuple[str, int]],
    ) -> str | None:
        """Why the instance may not be stopped, or None; an accepted stop counts the instance
        as gone from its index, so that a later stop in the request cannot take the last
        holder."""
        report = placed.report
        if placed.cell_id != item.cell_id or report.process_guid != item.process_guid:
            return INSTANCE_MISMATCH
        if placed.cell_id in view.lost_cells:
            return CELL_LOST
        loaded = known.get(report.process_guid)
        wanted = desired_instances(*loaded) if loaded is not None else 0
        version = loaded[1].version if loaded is not None else ""
        key = (report.process_guid, report.index, report.version)
        holders = view.holders.get(key, set())
        others = len(holders - {report.instance_guid})
        if still_needed(report, wanted, version, others):
            return STILL_NEEDED
        records = view.crash_records.get(key, set())
        others += len(records - {report.instance_guid})
        replaced = (report.process_guid, report.index) in started
        if not replaced and keeps_crashed_index(report, wanted, version, others):
            return REPLACEMENT_NOT_STARTED
        holders.discard(report.instance_guid)
        records.discard(report.instance_guid)
        return None

    # --- crashes ----------------------------------------------------------------------------

    async def _record_crashes(
        self, crashes: Sequence[CrashReport], known: dict[str, tuple[App, Process]]
    ) -> None:
        fresh: dict[tuple[str, int], CrashReport] = {}
        for crash in crashes:
            key = (crash.instance_guid, crash.crash_count)
            if key in self._recorded_crashes or key in fresh:
                self._counters.crashes_repeated += 1
            elif _owner(crash, known) is None:
                # Not a process of ours (deleted since, or a wrong report): nothing to record on.
                self._counters.crashes_ignored += 1
            else:
                fresh[key] = crash
        if not fresh:
            return
        async with self.store.write() as tx:
            spaces: dict[str, str] = {}
            for crash in fresh.values():
                owner = _owner(crash, known)
                assert owner is not None
                app, process = owner
                if app.space_guid not in spaces:
                    spaces[app.space_guid] = (await tx.spaces.require(app.space_guid)).org_guid
                await record_as(
                    tx,
                    self.clock,
                    Actor(guid=process.guid, type="process", name=process.type),
                    CRASH_EVENT,
                    target=(app.guid, "app", app.name),
                    space_guid=app.space_guid,
                    org_guid=spaces[app.space_guid],
                    **_crash_data(crash, process),
                )
        for key in fresh:
            self._recorded_crashes[key] = None
            if len(self._recorded_crashes) > REMEMBERED_CRASHES:
                self._recorded_crashes.popitem(last=False)
        self._counters.crashes_recorded += len(fresh)

    def _remember_crash(self, crash: CrashReport) -> None:
        by_index = self._last_crashes.setdefault(crash.process_guid, {})
        self._last_crashes.move_to_end(crash.process_guid)
        latest = by_index.get(crash.index)
        if latest is None or crash.crashed_at >= latest.crashed_at:
            by_index[crash.index] = crash
        if len(self._last_crashes) > REMEMBERED_CRASHED_PROCESSES:
            self._last_crashes.popitem(last=False)

    def crash_info(self, process_guid: str) -> dict[int, CrashInfo]:
        """Index -> what the health service last said about its crash: the waiting restart
        (with its time) where there is one, else the latest crash reported."""
        crashes = self._last_crashes.get(process_guid, {})
        info = {
            index: CrashInfo(crash.instance_guid, crash.crash_count, crash.reason, None)
            for index, crash in crashes.items()
        }
        for index, waiting in self._waiting_by_process.get(process_guid, {}).items():
            known = info.get(index)
            same = known is not None and known.instance_guid == waiting.instance_guid
            info[index] = CrashInfo(
                instance_guid=waiting.instance_guid,
                crash_count=waiting.crash_count,
                reason=known.reason if known is not None and same else None,
                next_restart_at=waiting.restart_at,
            )
        return info

    # --- status -----------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """What GET /v3/x/health shows: whether the health service reports, what it said
        last, what the controller did for it, and the restarts waiting for their back-off."""
        counters = self._counters
        return {
            "state": "ok" if self._reporting() else "unknown",
            "reported_at": _iso(self._reported_at),
            "status": dict(self._status),
            "counters": {
                "starts": {
                    "accepted": dict(counters.starts_accepted),
                    "refused": dict(counters.starts_refused),
                },
                "stops": {
                    "accepted": dict(counters.stops_accepted),
                    "refused": dict(counters.stops_refused),
                },
                "crashes": {
                    "recorded": counters.crashes_recorded,
                    "repeated": counters.crashes_repeated,
                    "ignored": counters.crashes_ignored,
                },
            },
            "waiting": [
                {
                    "process_guid": item.process_guid,
                    "index": item.index,
                    "crash_count": item.crash_count,
                    "restart_at": _iso(datetime.fromtimestamp(item.restart_at, UTC)),
                }
                for item in self._waiting
            ],
        }

    def _reporting(self) -> bool:
        last = self._reported_monotonic
        silent_for = MISSED_REPORTS * REPORT_INTERVAL_SECONDS
        return last is not None and self.clock.monotonic() - last <= silent_for


def _desired_entry(process: Process, app: App | None) -> dict[str, Any]:
    return {
        "process_guid": process.guid,
        "app_guid": process.app_guid,
        "version": process.version,
        "instances": desired_instances(app, process) if app is not None else 0,
    }


def _owner(crash: CrashReport, known: dict[str, tuple[App, Process]]) -> tuple[App, Process] | None:
    """The app and process a crash is about, when they exist and agree with the report."""
    loaded = known.get(crash.process_guid)
    return loaded if loaded is not None and loaded[0].guid == crash.app_guid else None


def _crash_data(crash: CrashReport, process: Process) -> dict[str, Any]:
    """The event's data, in CF's shape for audit.app.process.crash (plus the process)."""
    return {
        "process_guid": process.guid,
        "process_type": process.type,
        "instance": crash.instance_guid,
        "index": crash.index,
        "cell_id": crash.cell_id,
        "exit_status": crash.exit_status,
        "exit_description": crash.detail,
        "reason": crash.reason,
        "crash_count": crash.crash_count,
        "crash_timestamp": _nanoseconds(crash.crashed_at),
    }


def _nanoseconds(unix: float) -> int:
    """CF counts crash times in nanoseconds; whole seconds apart so no float rounds them."""
    seconds = int(unix)
    return seconds * 1_000_000_000 + round((unix - seconds) * 1_000_000_000)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
