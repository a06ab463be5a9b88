"""The placement planner (controller/placement.py): constraints, scoring, spreading, reasons."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overcast.controller import placement as planner
from overcast.controller.placement import (
    Capacity,
    CellView,
    PlacementRequest,
    PlacementResult,
    Weights,
    place,
)
from overcast.models.instances import CellState

STACK = "cflinuxfs4"


def cell(
    cell_id: str,
    *,
    zone: str = "z1",
    memory: int = 4096,
    disk: int = 8192,
    containers: int = 10,
    used: tuple[int, int, int] = (0, 0, 0),
    state: CellState = CellState.ENABLED,
    stacks: frozenset[str] = frozenset({STACK}),
    tags: frozenset[str] = frozenset(),
    process_instances: dict[str, int] | None = None,
    starting: int = 0,
) -> CellView:
    return CellView(
        cell_id=cell_id,
        zone=zone,
        state=state,
        stacks=stacks,
        tags=tags,
        capacity=Capacity(memory, disk, containers),
        allocated=Capacity(*used),
        process_instances=process_instances or {},
        starting=starting,
    )


def request(
    key: str,
    *,
    process: str = "p",
    memory: int = 256,
    disk: int = 512,
    stack: str = STACK,
    tags: frozenset[str] = frozenset(),
    exclude: frozenset[str] = frozenset(),
) -> PlacementRequest:
    return PlacementRequest(
        key=key,
        process_guid=process,
        memory_mb=memory,
        disk_mb=disk,
        stack=stack,
        tags=tags,
        exclude=exclude,
    )


def instances(process: str, count: int, memory: int = 256) -> list[PlacementRequest]:
    return [request(f"{process}:{i}", process=process, memory=memory) for i in range(count)]


def cells_by_key(result: PlacementResult) -> dict[str, str]:
    return {placement.request.key: placement.cell_id for placement in result.placed}


# --- hypothesis: random clusters and batches ---------------------------------------------------

ZONES = ("a", "b", "c")
STACKS = ("s1", "s2")
TAGS = ("t1", "t2")
PROCESSES = ("p0", "p1", "p2", "p3")


def _subset(items: Sequence[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(items))


@st.composite
def cell_views(draw: st.DrawFn, cell_id: str) -> CellView:
    # Power-of-two capacities keep the used fractions exact, so the oracle's arithmetic and
    # the planner's differ by rounding only. Most cells are enabled, have both stacks and are
    # lightly loaded, so that requests usually have several cells to choose from.
    memory = draw(st.sampled_from((1024, 2048, 4096)))
    disk = draw(st.sampled_from((2048, 4096, 8192)))
    containers = draw(st.sampled_from((2, 4, 8)))
    loaded = draw(st.booleans())
    return CellView(
        cell_id=cell_id,
        zone=draw(st.sampled_from(ZONES)),
        state=draw(st.sampled_from([CellState.ENABLED] * 4 + list(CellState))),
        stacks=draw(st.sampled_from([frozenset(STACKS)] * 3 + [frozenset(), frozenset({"s2"})])),
        tags=draw(st.sampled_from([frozenset(), frozenset(TAGS), frozenset({"t1"})])),
        capacity=Capacity(memory, disk, containers),
        allocated=Capacity(
            draw(st.integers(0, memory)) if loaded else 0,
            draw(st.integers(0, disk)) if loaded else 0,
            draw(st.integers(0, containers)) if loaded else 0,
        ),
        process_instances=draw(st.dictionaries(st.sampled_from(PROCESSES), st.integers(0, 3))),
        starting=draw(st.integers(0, 3)),
    )


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[PlacementRequest], list[CellView]]:
    ids = [f"c{n}" for n in range(draw(st.integers(0, 8)))]
    cells = [draw(cell_views(cell_id)) for cell_id in ids]
    count = draw(st.integers(0, 20))
    requests = [
        PlacementRequest(
            key=f"r{n}",
            process_guid=draw(st.sampled_from(PROCESSES)),
            memory_mb=draw(st.sampled_from((64, 128, 256, 512, 1024))),
            disk_mb=draw(st.sampled_from((128, 512, 1024))),
            stack=draw(st.sampled_from(("s1", "s1", "s1", "s2"))),
            tags=draw(
                st.sampled_from([frozenset(), frozenset(), frozenset({"t1"}), frozenset(TAGS)])
            ),
            exclude=draw(st.frozensets(st.sampled_from(ids), max_size=2)) if ids else frozenset(),
        )
        for n in range(count)
    ]
    return requests, cells


@dataclass
class _Oracle:
    """The rules of DESIGN.md section 7 written the obvious way: O(cells) per request."""

    cells: dict[str, CellView]
    used: dict[str, list[int]]
    starting: Counter[str]
    holding: dict[str, Counter[str]]

    @classmethod
    def of(cls, cells: Sequence[CellView]) -> _Oracle:
        holding: dict[str, Counter[str]] = defaultdict(Counter)
        for view in cells:
            for process, count in view.process_instances.items():
                holding[process][view.cell_id] += count
        return cls(
            cells={view.cell_id: view for view in cells},
            used={
                view.cell_id: [
                    view.allocated.memory_mb,
                    view.allocated.disk_mb,
                    view.allocated.containers,
                ]
                for view in cells
            },
            starting=Counter({view.cell_id: view.starting for view in cells}),
            holding=holding,
        )

    def qualifies(self, view: CellView, req: PlacementRequest) -> bool:
        memory, disk, containers = self.used[view.cell_id]
        return (
            view.state == CellState.ENABLED
            and view.cell_id not in req.exclude
            and req.stack in view.stacks
            and req.tags <= view.tags
            and view.capacity.memory_mb - memory >= req.memory_mb
            and view.capacity.disk_mb - disk >= req.disk_mb
            and view.capacity.containers - containers >= 1
        )

    def zone_count(self, zone: str, process: str) -> int:
        return sum(n for c, n in self.holding[process].items() if self.cells[c].zone == zone)

    def score(self, view: CellView, req: PlacementRequest, weights: Weights) -> float:
        memory, disk, containers = self.used[view.cell_id]
        used = (
            (memory + req.memory_mb) / view.capacity.memory_mb
            + (disk + req.disk_mb) / view.capacity.disk_mb
            + (containers + 1) / view.capacity.containers
        ) / 3
        return (
            used
            + weights.same_process * self.holding[req.process_guid][view.cell_id]
            + weights.starting * self.starting[view.cell_id]
        )

    def reserve(self, cell_id: str, req: PlacementRequest) -> None:
        used = self.used[cell_id]
        used[0] += req.memory_mb
        used[1] += req.disk_mb
        used[2] += 1
        self.starting[cell_id] += 1
        self.holding[req.process_guid][cell_id] += 1


def _check_against_oracle(requests: list[PlacementRequest], cells: list[CellView]) -> None:
    """Replays the planner's decisions against the oracle, in the documented order (larger
    first): each placement is on a qualifying cell in a least-loaded zone with the lowest
    score, and a request is left unplaced only when no cell qualifies."""
    weights = Weights()
    result = place(requests, cells, weights)
    chosen = cells_by_key(result)
    oracle = _Oracle.of(cells)
    order = sorted(
        range(len(requests)), key=lambda n: (-requests[n].memory_mb, -requests[n].disk_mb, n)
    )
    for n in order:
        req = requests[n]
        candidates = [v for v in cells if oracle.qualifies(v, req)]
        if req.key not in chosen:
            assert candidates == [], req
            continue
        winner = oracle.cells[chosen[req.key]]
        assert winner in candidates
        fewest = min(oracle.zone_count(v.zone, req.process_guid) for v in candidates)
        assert oracle.zone_count(winner.zone, req.process_guid) == fewest
        in_zone = [v for v in candidates if oracle.zone_count(v.zone, req.process_guid) == fewest]
        best = min(oracle.score(v, req, weights) for v in in_zone)
        assert oracle.score(winner, req, weights) <= best + 1e-9
        oracle.reserve(winner.cell_id, req)


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_every_decision_is_the_best_one(
    case: tuple[list[PlacementRequest], list[CellView]],
) -> None:
    _check_against_oracle(*case)


@settings(max_examples=150, deadline=None)
@given(clusters())
def test_every_decision_is_the_best_one_on_private_heaps(
    case: tuple[list[PlacementRequest], list[CellView]],
) -> None:
    """Processes on many cells get heaps of their own; force that path for every process."""
    with patch.object(planner._Auction, "_goes_private", lambda *_: True):
        _check_against_oracle(*case)


def test_a_process_on_every_cell_switches_to_private_heaps() -> None:
    views = [cell(f"c{n:02d}", zone=f"z{n % 3}", containers=99) for n in range(30)]
    batch = instances("web", 300, memory=64)
    result = place(batch, views)
    assert len(result.placed) == 300
    # Spread evenly: ten instances on every cell.
    assert set(Counter(cells_by_key(result).values()).values()) == {10}


@settings(max_examples=200, deadline=None)
@given(clusters())
def test_never_overcommits_nor_uses_a_cell_that_does_not_qualify(
    case: tuple[list[PlacementRequest], list[CellView]],
) -> None:
    requests, cells = case
    result = place(requests, cells)
    views = {view.cell_id: view for view in cells}
    added: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for placement in result.placed:
        totals = added[placement.cell_id]
        totals[0] += placement.request.memory_mb
        totals[1] += placement.request.disk_mb
        totals[2] += 1
    for view in cells:
        memory, disk, containers = added[view.cell_id]
        assert view.allocated.memory_mb + memory <= view.capacity.memory_mb
        assert view.allocated.disk_mb + disk <= view.capacity.disk_mb
        assert view.allocated.containers + containers <= view.capacity.containers
    for placement in result.placed:
        view, req = views[placement.cell_id], placement.request
        assert view.state == CellState.ENABLED
        assert view.cell_id not in req.exclude
        assert req.stack in view.stacks
        assert req.tags <= view.tags
    # Each request once, in the caller's order, in one list or the other.
    keys = [r.key for r in requests]
    placed = [p.request.key for p in result.placed]
    unplaced = [u.request.key for u in result.unplaced]
    assert sorted(placed + unplaced) == sorted(keys)
    assert placed == [k for k in keys if k in set(placed)]
    assert unplaced == [k for k in keys if k in set(unplaced)]
    assert all(u.reason for u in result.unplaced)


@settings(max_examples=100, deadline=None)
@given(clusters(), st.randoms(use_true_random=False))
def test_deterministic_whatever_the_cell_order(
    case: tuple[list[PlacementRequest], list[CellView]], rng: random.Random
) -> None:
    requests, cells = case
    first = place(requests, cells)
    assert place(requests, cells) == first
    shuffled = list(cells)
    rng.shuffle(shuffled)
    assert place(requests, shuffled) == first


@settings(max_examples=100, deadline=None)
@given(
    cells=st.integers(1, 12),
    slots=st.integers(1, 6),
    zones=st.integers(1, 3),
    processes=st.integers(1, 5),
    data=st.data(),
)
def test_places_everything_that_fits_with_uniform_sizes(
    cells: int, slots: int, zones: int, processes: int, data: st.DataObject
) -> None:
    count = data.draw(st.integers(0, cells * slots))
    views = [
        cell(f"c{n}", zone=f"z{n % zones}", memory=256 * slots, disk=512 * slots, containers=99)
        for n in range(cells)
    ]
    batch = [request(f"r{n}", process=f"p{n % processes}") for n in range(count)]
    result = place(batch, views)
    assert result.unplaced == ()
    assert len(result.placed) == count


# --- examples ----------------------------------------------------------------------------------


def test_spreads_three_instances_over_two_zones() -> None:
    views = [cell(f"{zone}-{n}", zone=zone) for zone in ("z1", "z2") for n in range(3)]
    result = place(instances("web", 3), views)
    zones = Counter(cell_id.split("-")[0] for cell_id in cells_by_key(result).values())
    assert sorted(zones.values()) == [1, 2]


def test_counts_instances_already_in_a_zone() -> None:
    views = [
        cell("a", zone="z1", process_instances={"web": 2}),
        cell("b", zone="z1"),
        cell("c", zone="z2", memory=8192),  # fuller-looking zone would not matter
        cell("d", zone="z2", process_instances={"web": 1}),
    ]
    result = place(instances("web", 1), views)
    assert cells_by_key(result) == {"web:0": "c"}


def test_spreads_a_process_over_cells() -> None:
    views = [cell(f"c{n}") for n in range(4)]
    result = place(instances("web", 4), views)
    assert sorted(cells_by_key(result).values()) == ["c0", "c1", "c2", "c3"]


def test_a_batch_does_not_pile_onto_the_emptiest_cell() -> None:
    views = [cell("big", memory=8192, disk=16384), cell("small")]
    batch = [request(f"r{n}", process=f"p{n}") for n in range(6)]
    result = place(batch, views)
    assert set(cells_by_key(result).values()) == {"big", "small"}


def test_prefers_the_emptier_cell() -> None:
    views = [cell("a", used=(2048, 0, 0)), cell("b", used=(1024, 0, 0))]
    assert cells_by_key(place([request("r")], views)) == {"r": "b"}


def test_starting_instances_count_against_a_cell() -> None:
    views = [cell("a", starting=2), cell("b", used=(512, 0, 0))]
    assert cells_by_key(place([request("r")], views)) == {"r": "b"}
    assert cells_by_key(place([request("r")], views, Weights(starting=0))) == {"r": "a"}


def test_ties_go_to_the_lowest_cell_id() -> None:
    views = [cell("c2"), cell("c1"), cell("c3")]
    assert cells_by_key(place([request("r")], views)) == {"r": "c1"}


def test_larger_requests_go_first_but_results_keep_the_callers_order() -> None:
    views = [cell("only", memory=1024)]
    batch = [request("small", memory=512), request("large", memory=1024)]
    result = place(batch, views)
    assert cells_by_key(result) == {"large": "only"}
    assert [u.request.key for u in result.unplaced] == ["small"]
    assert result.cell_of("large") == "only"
    assert result.cell_of("small") is None


def test_skips_cells_that_cannot_take_the_request() -> None:
    views = [
        cell("disabled", state=CellState.DISABLED),
        cell("draining", state=CellState.DRAINING),
        cell("excluded"),
        cell("other-stack", stacks=frozenset({"windows"})),
        cell("untagged", tags=frozenset({"gpu"})),
        cell("full", used=(0, 0, 10)),
        cell("fits", tags=frozenset({"gpu", "ssd"}), used=(2048, 2048, 5)),
    ]
    req = request("r", tags=frozenset({"gpu", "ssd"}), exclude=frozenset({"excluded"}))
    assert cells_by_key(place([req], views)) == {"r": "fits"}


def test_same_process_weight_can_be_turned_off() -> None:
    views = [cell("a", process_instances={"web": 1}), cell("b", used=(1024, 0, 0))]
    assert cells_by_key(place(instances("web", 1), views)) == {"web:0": "b"}
    assert cells_by_key(place(instances("web", 1), views, Weights(same_process=0))) == {
        "web:0": "a"
    }


def test_rejects_duplicate_keys_and_cells() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        place([request("r"), request("r")], [cell("a")])
    with pytest.raises(ValueError, match="appears twice"):
        place([request("r")], [cell("a"), cell("a")])
    with pytest.raises(ValueError, match="negative"):
        request("r", memory=-1)


# --- reasons -----------------------------------------------------------------------------------


def _reason(req: PlacementRequest, views: list[CellView]) -> str:
    result = place([req], views)
    assert result.placed == ()
    return result.unplaced[0].reason


def test_reason_no_cells_at_all() -> None:
    assert _reason(request("r"), []) == "no enabled cell"


def test_reason_no_enabled_cell() -> None:
    views = [cell("a", state=CellState.DISABLED), cell("b", state=CellState.DRAINED)]
    assert _reason(request("r"), views) == "no enabled cell"


def test_reason_stack() -> None:
    assert (
        _reason(request("r", stack="windows"), [cell("a")]) == "no enabled cell has stack windows"
    )


def test_reason_tags() -> None:
    views = [cell("a", tags=frozenset({"gpu"})), cell("b", tags=frozenset({"ssd"}))]
    req = request("r", tags=frozenset({"ssd", "gpu"}))
    assert _reason(req, views) == f"no enabled cell with stack {STACK} has tags gpu, ssd"


def test_reason_every_cell_rejected_it() -> None:
    req = request("r", exclude=frozenset({"a", "b"}))
    assert _reason(req, [cell("a"), cell("b")]) == "every eligible cell (2) has already rejected it"


def test_reason_memory() -> None:
    views = [cell("a", used=(3896, 0, 0)), cell("b", used=(4000, 0, 0))]
    assert _reason(request("r", memory=512), views) == (
        "insufficient resources: memory (needs 512 MB, the most free on an eligible cell is 200 MB)"
    )


def test_reason_disk_and_memory() -> None:
    views = [cell("a", used=(4096, 8000, 0))]
    assert _reason(request("r", memory=512, disk=1024), views) == (
        "insufficient resources: memory (needs 512 MB, the most free on an eligible cell is 0 MB);"
        " disk (needs 1024 MB, the most free on an eligible cell is 192 MB)"
    )


def test_reason_containers() -> None:
    views = [cell("a", used=(0, 0, 10))]
    assert _reason(request("r"), views) == (
        "insufficient resources: containers (every eligible cell is at its container limit)"
    )


def test_reason_no_single_cell_has_everything() -> None:
    views = [cell("a", used=(4000, 0, 0)), cell("b", used=(0, 8000, 0))]
    assert _reason(request("r", memory=512, disk=1024), views) == (
        "insufficient resources: no eligible cell has 512 MB memory, 1024 MB disk and a "
        "container slot free at once"
    )


def test_reason_reflects_this_batchs_reservations() -> None:
    views = [cell("a", memory=1024)]
    result = place(instances("web", 3, memory=512), views)
    assert len(result.placed) == 2
    assert result.unplaced[0].reason == (
        "insufficient resources: memory (needs 512 MB, the most free on an eligible cell is 0 MB)"
    )


def test_unplaced_requests_do_not_disturb_the_rest() -> None:
    views = [cell("a"), replace(cell("b"), stacks=frozenset({"windows"}))]
    batch = [request("linux"), request("win", stack="windows"), request("mac", stack="macos")]
    result = place(batch, views)
    assert cells_by_key(result) == {"linux": "a", "win": "b"}
    assert [u.request.key for u in result.unplaced] == ["mac"]
