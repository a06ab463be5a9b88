"""Where new instances go: Diego's auction, done centrally and deterministically (DESIGN.md
section 7, seed-systems.md section 3.5).

A pure function over a snapshot of the cells (built by the caller from heartbeats): no I/O, no
clock, no bus. A cell qualifies for a request when it is ENABLED, was not excluded (it already
rejected the request), has the stack and every tag asked for, and has the memory, disk and one
container slot free. Among qualifying cells the zone holding the fewest instances of the
process wins (zones tied on that count compete together), then the lowest score:

    mean(used memory, used disk, used containers, as fractions, after the placement)
    + weights.same_process x instances of the process already on the cell
    + weights.starting x instances starting on the cell

with exact ties going to the lowest cell id. Each placement is reserved locally before the next
request is considered, so a batch spreads instead of piling onto the emptiest cell.

How it stays fast: the request-dependent part of the score, (memory/total + disk/total) / 3,
is the same for every cell of one capacity shape, so within a shape the cells rank by the part
that does not depend on the request. Cells are therefore kept in heaps, one per (stack and tags
asked for, zone, capacity shape), ordered by that part; a request looks at the top of a handful
of heaps instead of scanning every cell. Cells that already hold the process carry the
same-process weight and are usually few, so they are scored one by one beside the heaps; a
process on a large share of the cells gets heaps of its own, keyed by its full score, instead.
(Ranking a shape by the request-independent part gives the same order as the full score,
except that two scores one rounding error apart may go to the lower score rather than the
lower cell id.)
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby, pairwise

from overcast.models.instances import CellState

# --- inputs and outputs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capacity:
    """An amount of the three resources a cell hands out (a heartbeat's `Resources`)."""

    memory_mb: int
    disk_mb: int
    containers: int

    def __post_init__(self) -> None:
        if min(self.memory_mb, self.disk_mb, self.containers) < 0:
            raise ValueError(f"negative capacity {self}")


@dataclass(frozen=True)
class CellView:
    """One cell as its latest heartbeat describes it."""

    cell_id: str
    zone: str
    state: CellState
    stacks: frozenset[str]
    tags: frozenset[str]
    capacity: Capacity
    allocated: Capacity
    # process guid -> live instances of it on this cell.
    process_instances: Mapping[str, int] = field(default_factory=dict)
    # Instances currently starting here: a cell busy starting containers is a worse choice.
    starting: int = 0


@dataclass(frozen=True)
class PlacementRequest:
    """One instance to place. `key` is the caller's handle (e.g. "process:index")."""

    key: str
    process_guid: str
    memory_mb: int
    disk_mb: int
    stack: str
    tags: frozenset[str] = frozenset()
    # Cells that already rejected this instance; a reject re-places elsewhere at once.
    exclude: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.memory_mb < 0 or self.disk_mb < 0:
            raise ValueError(f"negative resources in placement request {self.key!r}")


@dataclass(frozen=True)
class Weights:
    # Diego adds the count of same-process instances to the score, which spreads a process
    # over cells before it fills the emptiest one.
    same_process: float = 1.0
    # Diego's rep default for `startingContainerWeight`: starting a container is expensive.
    starting: float = 0.25

    def __post_init__(self) -> None:
        # Negative weights would pull instances together, the opposite of the auction's
        # intent; refusing them also keeps every score growing as a batch is placed, which
        # the private heaps below rely on.
        if not (self.same_process >= 0 and self.starting >= 0):
            raise ValueError(f"placement weights must not be negative: {self}")


@dataclass(frozen=True)
class Placement:
    request: PlacementRequest
    cell_id: str


@dataclass(frozen=True)
class Unplaced:
    request: PlacementRequest
    # A sentence naming the constraint no cell met, for the user and the audit log.
    reason: str


@dataclass(frozen=True)
class PlacementResult:
    """Both lists are in the caller's order of the requests."""

    placed: tuple[Placement, ...]
    unplaced: tuple[Unplaced, ...]

    def cell_of(self, key: str) -> str | None:
        """The cell chosen for the request with this key; None when it was not placed."""
        for placement in self.placed:
            if placement.request.key == key:
                return placement.cell_id
        return None


# --- the working state of one run --------------------------------------------------------------

# The part of a placement request that decides which cells can ever qualify.
_Fit = tuple[str, frozenset[str]]
# A cell's capacity shape: (memory, disk, containers) totals.
_Shape = tuple[int, int, int]
_NO_CELLS: frozenset[int] = frozenset()


def _fraction(used: int, total: int) -> float:
    # A resource the cell does not have at all is fully used (it can never fit a request).
    return used / total if total > 0 else 1.0


def _request_term(shape: _Shape, memory_mb: int, disk_mb: int) -> float:
    """The request's own share of the score on a cell of this shape; together with
    `_Cells.base` it makes the mean used fraction after placement."""
    return (_fraction(memory_mb, shape[0]) + _fraction(disk_mb, shape[1])) / 3


class _Shelf:
    """The cells of one zone and capacity shape that can take one stack and tag set, in a heap
    of (base score, cell index, cell version). An entry whose version is behind its cell's is
    stale and dropped when it surfaces; each change to a cell pushes a fresh entry."""

    __slots__ = ("entries", "shape")

    def __init__(self, shape: _Shape) -> None:
        self.shape = shape
        self.entries: list[tuple[float, int, int]] = []


class _Cells:
    """Mutable per-run copy of the cells, indexed by position in cell id order (so comparing
    indices is comparing cell ids)."""

    def __init__(self, cells: Sequence[CellView], weights: Weights) -> None:
        views = sorted(cells, key=lambda cell: cell.cell_id)
        for previous, cell in pairwise(views):
            if previous.cell_id == cell.cell_id:
                raise ValueError(f"cell {cell.cell_id!r} appears twice")
        self.views = views
        self.weights = weights
        self.index = {cell.cell_id: i for i, cell in enumerate(views)}
        self.zone = [cell.zone for cell in views]
        self.shape: list[_Shape] = [
            (c.capacity.memory_mb, c.capacity.disk_mb, c.capacity.containers) for c in views
        ]
        self.used_memory = [cell.allocated.memory_mb for cell in views]
        self.used_disk = [cell.allocated.disk_mb for cell in views]
        self.used_slots = [cell.allocated.containers for cell in views]
        self.free_memory = [c.capacity.memory_mb - c.allocated.memory_mb for c in views]
        self.free_disk = [c.capacity.disk_mb - c.allocated.disk_mb for c in views]
        self.free_slots = [c.capacity.containers - c.allocated.containers for c in views]
        self.starting = [cell.starting for cell in views]
        self.version = [0] * len(views)
        self.base = [self._base(i) for i in range(len(views))]
        # process guid -> cell index -> instances there, and process guid -> zone -> instances.
        self.holding: defaultdict[str, dict[int, int]] = defaultdict(dict)
        self.in_zone: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        for i, cell in enumerate(views):
            for process_guid, count in cell.process_instances.items():
                if count > 0:
                    self.holding[process_guid][i] = count
                    self.in_zone[process_guid][cell.zone] += count

    def _base(self, i: int) -> float:
        """The request-independent part of the score: used fractions with this placement's
        container slot counted, plus the starting weight."""
        memory, disk, slots = self.shape[i]
        used = (
            _fraction(self.used_memory[i], memory)
            + _fraction(self.used_disk[i], disk)
            + _fraction(self.used_slots[i] + 1, slots)
        )
        return used / 3 + self.weights.starting * self.starting[i]

    def fits(self, i: int, memory_mb: int, disk_mb: int) -> bool:
        return (
            self.free_slots[i] > 0
            and self.free_memory[i] >= memory_mb
            and self.free_disk[i] >= disk_mb
        )

    def reserve(self, i: int, request: PlacementRequest) -> None:
        """Account for a placement until the next heartbeat would: it holds resources, is
        starting, and is one more instance of its process on the cell and in the zone."""
        self.used_memory[i] += request.memory_mb
        self.used_disk[i] += request.disk_mb
        self.used_slots[i] += 1
        self.free_memory[i] -= request.memory_mb
        self.free_disk[i] -= request.disk_mb
        self.free_slots[i] -= 1
        self.starting[i] += 1
        self.version[i] += 1
        self.base[i] = self._base(i)
        holding = self.holding[request.process_guid]
        holding[i] = holding.get(i, 0) + 1
        self.in_zone[request.process_guid][self.zone[i]] += 1


class _Auction:
    """Shelves per stack-and-tags combination, built the first time a request asks for it."""

    def __init__(self, cells: _Cells, requests: Sequence[PlacementRequest]) -> None:
        self.cells = cells
        # Requests of each process not yet placed, to judge when private heaps pay off.
        self.remaining = Counter(request.process_guid for request in requests)
        # fit -> zone -> shelves, and fit -> indices of the cells that can ever take it.
        self.shelves: dict[_Fit, dict[str, list[_Shelf]]] = {}
        self.eligible: dict[_Fit, frozenset[int]] = {}
        # Every shelf a cell sits on, to push its fresh entry after a reservation.
        self.shelves_of: defaultdict[int, list[_Shelf]] = defaultdict(list)
        # fit and exclusions -> (memory, disk) of requests no cell could take. Capacity only
        # shrinks during a run, so anything at least as large fails too: a process whose
        # first instance found no room does not search again for each of its other instances.
        self.failed: dict[tuple[_Fit, frozenset[int]], list[tuple[int, int]]] = {}
        # (process guid, fit) -> zone -> shelves for a process already on many cells; see
        # `_private_for`.
        self.private: dict[tuple[str, _Fit], dict[str, list[_Shelf]]] = {}

    def _shelves_for(self, fit: _Fit) -> dict[str, list[_Shelf]]:
        if fit in self.shelves:
            return self.shelves[fit]
        stack, tags = fit
        cells = self.cells
        by_zone: dict[str, dict[_Shape, _Shelf]] = defaultdict(dict)
        eligible = []
        for i, view in enumerate(cells.views):
            if view.state != CellState.ENABLED or stack not in view.stacks or not tags <= view.tags:
                continue
            eligible.append(i)
            shelf = by_zone[view.zone].setdefault(cells.shape[i], _Shelf(cells.shape[i]))
            shelf.entries.append((cells.base[i], i, cells.version[i]))
            self.shelves_of[i].append(shelf)
        for zone_shelves in by_zone.values():
            for shelf in zone_shelves.values():
                heapq.heapify(shelf.entries)
        self.eligible[fit] = frozenset(eligible)
        self.shelves[fit] = {
            zone: [zone_shelves[shape] for shape in sorted(zone_shelves)]
            for zone, zone_shelves in sorted(by_zone.items())
        }
        return self.shelves[fit]

    def choose(self, request: PlacementRequest, excluded: frozenset[int]) -> int | None:
        """The index of the winning cell, or None when no cell qualifies."""
        fit = (request.stack, request.tags)
        shelves = self._shelves_for(fit)
        self.remaining[request.process_guid] -= 1
        failures = self.failed.setdefault((fit, excluded), [])
        size = (request.memory_mb, request.disk_mb)
        if any(size[0] >= memory and size[1] >= disk for memory, disk in failures):
            return None
        in_zone: Mapping[str, int] = self.cells.in_zone.get(request.process_guid, {})
        # Zones with the fewest instances of the process first; ties compete together.
        ranked = sorted(shelves, key=lambda zone: (in_zone.get(zone, 0), zone))
        for _, group in groupby(ranked, key=lambda zone: in_zone.get(zone, 0)):
            chosen = self._best_in(request, list(group), shelves, excluded)
            if chosen is not None:
                return chosen
        failures.append(size)
        return None

    def _best_in(
        self,
        request: PlacementRequest,
        zones: list[str],
        shelves: dict[str, list[_Shelf]],
        excluded: frozenset[int],
    ) -> int | None:
        holding = self.cells.holding.get(request.process_guid, {})
        if self._goes_private(request, holding):
            return self._best_private(request, zones, excluded)
        best: tuple[float, int] | None = None
        for zone in zones:
            for shelf in shelves[zone]:
                top = self._top(shelf, request, excluded, holding)
                if top is not None:
                    score = top[0] + _request_term(shelf.shape, request.memory_mb, request.disk_mb)
                    if best is None or (score, top[1]) < best:
                        best = (score, top[1])
        held = self._best_holding(request, zones, excluded, holding)
        if held is not None and (best is None or held < best):
            best = held
        return None if best is None else best[1]

    def _best_holding(
        self,
        request: PlacementRequest,
        zones: list[str],
        excluded: frozenset[int],
        holding: Mapping[int, int],
    ) -> tuple[float, int] | None:
        """The best of the cells already holding the process (skipped on the shelves)."""
        cells = self.cells
        eligible = self.eligible[(request.stack, request.tags)]
        best: tuple[float, int] | None = None
        for i, count in holding.items():
            if cells.zone[i] not in zones or i not in eligible or i in excluded:
                continue
            if not cells.fits(i, request.memory_mb, request.disk_mb):
                continue
            score = cells.base[i] + _request_term(
                cells.shape[i], request.memory_mb, request.disk_mb
            )
            score += cells.weights.same_process * count
            if best is None or (score, i) < best:
                best = (score, i)
        return best

    def _goes_private(self, request: PlacementRequest, holding: Mapping[int, int]) -> bool:
        """Whether the process should use shelves of its own from now on: when passing over
        its cells on the shared shelves, for each of its requests still to come, would cost
        more than building them (one entry per eligible cell)."""
        fit = (request.stack, request.tags)
        if (request.process_guid, fit) in self.private:
            return True
        ahead = self.remaining[request.process_guid] + 1
        return len(holding) >= 8 and len(holding) * ahead >= len(self.eligible[fit])

    def _private_for(self, request: PlacementRequest) -> dict[str, list[_Shelf]]:
        """Shelves of their own for a process on many cells, keyed by base score plus the
        same-process weight: skipping its cells on the shared shelves would then cost a pass
        over most of the cluster per request. Entries are not refreshed on reservation but
        re-keyed when they surface stale; that is sound because a cell's score only grows
        during a run, so a stale key is never above the true one."""
        fit = (request.stack, request.tags)
        private = self.private.get((request.process_guid, fit))
        if private is not None:
            return private
        cells = self.cells
        holding = cells.holding.get(request.process_guid, {})
        weight = cells.weights.same_process
        by_zone: dict[str, dict[_Shape, _Shelf]] = defaultdict(dict)
        for i in sorted(self.eligible[fit]):
            if cells.free_slots[i] <= 0:
                continue
            shelf = by_zone[cells.zone[i]].setdefault(cells.shape[i], _Shelf(cells.shape[i]))
            key = cells.base[i] + weight * holding.get(i, 0)
            shelf.entries.append((key, i, cells.version[i]))
        for zone_shelves in by_zone.values():
            for shelf in zone_shelves.values():
                heapq.heapify(shelf.entries)
        private = {zone: list(zone_shelves.values()) for zone, zone_shelves in by_zone.items()}
        self.private[(request.process_guid, fit)] = private
        return private

    def _best_private(
        self, request: PlacementRequest, zones: list[str], excluded: frozenset[int]
    ) -> int | None:
        private = self._private_for(request)
        best: tuple[float, int] | None = None
        for zone in zones:
            for shelf in private.get(zone, ()):
                top = self._top_private(shelf, request, excluded)
                if top is not None:
                    score = top[0] + _request_term(shelf.shape, request.memory_mb, request.disk_mb)
                    if best is None or (score, top[1]) < best:
                        best = (score, top[1])
        return None if best is None else best[1]

    def _top_private(
        self, shelf: _Shelf, request: PlacementRequest, excluded: frozenset[int]
    ) -> tuple[float, int, int] | None:
        """Like `_top`, on a private shelf: one entry per cell, re-keyed when stale."""
        cells = self.cells
        holding = cells.holding.get(request.process_guid, {})
        weight = cells.weights.same_process
        heap = shelf.entries
        passed: list[tuple[float, int, int]] = []
        found = None
        while heap:
            entry = heap[0]
            i = entry[1]
            if cells.free_slots[i] <= 0:
                heapq.heappop(heap)
            elif entry[2] != cells.version[i]:
                key = cells.base[i] + weight * holding.get(i, 0)
                heapq.heapreplace(heap, (key, i, cells.version[i]))
            elif (
                cells.free_memory[i] >= request.memory_mb
                and cells.free_disk[i] >= request.disk_mb
                and i not in excluded
            ):
                found = entry
                break
            else:
                passed.append(heapq.heappop(heap))
        for entry in passed:
            heapq.heappush(heap, entry)
        return found

    def _top(
        self,
        shelf: _Shelf,
        request: PlacementRequest,
        excluded: frozenset[int],
        holding: Mapping[int, int],
    ) -> tuple[float, int, int] | None:
        """The lowest-based current entry on the shelf that fits the request, is not excluded
        and does not hold the process; it stays on the heap. Entries passed over are put back
        (they may suit the next request); stale entries and full cells are dropped for good."""
        cells = self.cells
        heap = shelf.entries
        passed: list[tuple[float, int, int]] = []
        found = None
        while heap:
            entry = heap[0]
            i = entry[1]
            if entry[2] != cells.version[i] or cells.free_slots[i] <= 0:
                heapq.heappop(heap)
            elif (
                cells.free_memory[i] >= request.memory_mb
                and cells.free_disk[i] >= request.disk_mb
                and i not in excluded
                and i not in holding
            ):
                found = entry
                break
            else:
                passed.append(heapq.heappop(heap))
        for entry in passed:
            heapq.heappush(heap, entry)
        return found

    def reserve(self, i: int, request: PlacementRequest) -> None:
        cells = self.cells
        cells.reserve(i, request)
        if cells.free_slots[i] > 0:
            entry = (cells.base[i], i, cells.version[i])
            for shelf in self.shelves_of[i]:
                heapq.heappush(shelf.entries, entry)


# --- explaining a failure ----------------------------------------------------------------------


def _explain(request: PlacementRequest, cells: _Cells, excluded: frozenset[int]) -> str:
    """Which constraint failed across all cells, checked in the order a user can act on."""
    views = cells.views
    enabled = [i for i, view in enumerate(views) if view.state == CellState.ENABLED]
    if not enabled:
        return "no enabled cell"
    stacked = [i for i in enabled if request.stack in views[i].stacks]
    if not stacked:
        return f"no enabled cell has stack {request.stack}"
    tagged = [i for i in stacked if request.tags <= views[i].tags]
    if not tagged:
        tags = ", ".join(sorted(request.tags))
        return f"no enabled cell with stack {request.stack} has tags {tags}"
    open_cells = [i for i in tagged if i not in excluded]
    if not open_cells:
        return f"every eligible cell ({len(tagged)}) has already rejected it"
    return _explain_resources(request, cells, open_cells)


def _explain_resources(request: PlacementRequest, cells: _Cells, eligible: list[int]) -> str:
    most_memory = max(0, max(cells.free_memory[i] for i in eligible))
    most_disk = max(0, max(cells.free_disk[i] for i in eligible))
    short = []
    if max(cells.free_slots[i] for i in eligible) <= 0:
        short.append("containers (every eligible cell is at its container limit)")
    if most_memory < request.memory_mb:
        short.append(
            f"memory (needs {request.memory_mb} MB, the most free on an eligible cell "
            f"is {most_memory} MB)"
        )
    if most_disk < request.disk_mb:
        short.append(
            f"disk (needs {request.disk_mb} MB, the most free on an eligible cell "
            f"is {most_disk} MB)"
        )
    if short:
        return "insufficient resources: " + "; ".join(short)
    # Each resource is free somewhere, but never all three on one cell.
    return (
        f"insufficient resources: no eligible cell has {request.memory_mb} MB memory, "
        f"{request.disk_mb} MB disk and a container slot free at once"
    )


# --- the entry point ---------------------------------------------------------------------------


def place(
    requests: Sequence[PlacementRequest],
    cells: Sequence[CellView],
    weights: Weights = Weights(),
) -> PlacementResult:
    """Choose a cell for each request, or say why none qualifies. Deterministic: the same
    input gives the same output."""
    _check_keys(requests)
    state = _Cells(cells, weights)
    auction = _Auction(state, requests)
    chosen: dict[int, int] = {}
    reasons: dict[int, str] = {}
    # Explaining scans every cell; identical failures with no placement in between (the other
    # instances of a process that found no room) share one explanation.
    explained: dict[tuple[object, ...], str] = {}
    # Diego places larger requests first: they are the hardest to fit once the batch has
    # taken its share; the caller's position breaks ties so the order is total.
    order = sorted(
        range(len(requests)),
        key=lambda n: (-requests[n].memory_mb, -requests[n].disk_mb, n),
    )
    for n in order:
        request = requests[n]
        excluded = _excluded(request, state)
        winner = auction.choose(request, excluded)
        if winner is None:
            shape = (request.stack, request.tags, excluded, request.memory_mb, request.disk_mb)
            cause = (*shape, len(chosen))
            if cause not in explained:
                explained[cause] = _explain(request, state, excluded)
            reasons[n] = explained[cause]
        else:
            auction.reserve(winner, request)
            chosen[n] = winner
    return PlacementResult(
        placed=tuple(
            Placement(requests[n], state.views[chosen[n]].cell_id)
            for n in range(len(requests))
            if n in chosen
        ),
        unplaced=tuple(
            Unplaced(requests[n], reasons[n]) for n in range(len(requests)) if n in reasons
        ),
    )


def _check_keys(requests: Sequence[PlacementRequest]) -> None:
    seen: set[str] = set()
    for request in requests:
        if request.key in seen:
            raise ValueError(f"placement request key {request.key!r} appears twice")
        seen.add(request.key)


def _excluded(request: PlacementRequest, cells: _Cells) -> frozenset[int]:
    if not request.exclude:
        return _NO_CELLS
    return frozenset(cells.index[c] for c in request.exclude if c in cells.index)
