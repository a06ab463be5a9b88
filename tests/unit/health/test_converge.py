"""Desired against actual across the fleet (health/converge.py)."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overcast.health.converge import (
    ActualInstance,
    CellHealth,
    ConvergePolicy,
    DesiredProcess,
    DesiredState,
    Freshness,
    Plan,
    StartAction,
    StartReason,
    StopReason,
    converge,
)
from overcast.models.instances import LIVE_STATES, CellState, InstanceState

NOW = 10_000.0
HEARTBEAT = 5.0
# The default policy: desired state refreshed every 30 s, stale after 60 s.
STALE_AFTER = 60.0
REFRESHES = 5

RUNNING = InstanceState.RUNNING
CRASHED = InstanceState.CRASHED
STOPPABLE = LIVE_STATES | {InstanceState.CRASHED, InstanceState.EVACUATING}


def cell(*, last: float = NOW, state: CellState = CellState.ENABLED) -> CellHealth:
    return CellHealth(state=state, last_heartbeat_at=last, heartbeat_interval=HEARTBEAT)


CELLS = {"c1": cell(), "c2": cell(), "dead": cell(last=NOW - 3 * HEARTBEAT - 1)}


def inst(
    guid: str,
    index: int,
    *,
    process: str = "p",
    cell_id: str = "c1",
    version: str = "v2",
    state: InstanceState = RUNNING,
    since: float = 100.0,
    crash_count: int = 0,
    crashed_at: float | None = None,
) -> ActualInstance:
    return ActualInstance(
        instance_guid=guid,
        process_guid=process,
        cell_id=cell_id,
        index=index,
        version=version,
        state=state,
        since=since,
        crash_count=crash_count,
        crashed_at=crashed_at,
    )


def crashed(guid: str, index: int, *, count: int, at: float, **fields: str) -> ActualInstance:
    return inst(guid, index, state=CRASHED, since=at, crash_count=count, crashed_at=at, **fields)


def proc(instances: int, *, guid: str = "p", version: str = "v2") -> DesiredProcess:
    return DesiredProcess(
        process_guid=guid, app_guid=f"app-{guid}", version=version, instances=instances
    )


def desired(
    *processes: DesiredProcess, fetched_at: float = NOW, refreshes: int = REFRESHES
) -> DesiredState:
    return DesiredState({p.process_guid: p for p in processes}, fetched_at, refreshes)


def run(
    actual: list[ActualInstance],
    *processes: DesiredProcess,
    cells: Mapping[str, CellHealth] = CELLS,
    unknown_since: Mapping[str, int] | None = None,
    fetched_at: float = NOW,
    now: float = NOW,
) -> Plan:
    return converge(
        desired(*processes, fetched_at=fetched_at),
        actual,
        cells,
        now,
        unknown_since=unknown_since or {},
    )


def starts(plan: Plan) -> list[tuple[str, int, StartReason]]:
    return [(s.process_guid, s.index, s.reason) for s in plan.starts]


def stops(plan: Plan) -> dict[str, StopReason]:
    return {stop.instance_guid: stop.reason for stop in plan.stops}


# --- the basics --------------------------------------------------------------------------------


def test_nothing_to_do_when_converged() -> None:
    actual = [
        inst("a", 0),
        inst("b", 1, state=InstanceState.STARTING, cell_id="c2"),
        inst("c", 2, state=InstanceState.CLAIMED),
    ]
    plan = run(actual, proc(3))
    assert plan.empty
    assert plan.waiting == ()
    assert plan.freshness is Freshness.FRESH
    assert plan.lost_cells == ("dead",)


def test_a_new_process_starts_every_index_now() -> None:
    plan = run([], proc(3))
    assert plan.starts == tuple(
        StartAction("p", "app-p", "v2", index, StartReason.MISSING, not_before=NOW)
        for index in range(3)
    )


def test_missing_indices_are_started() -> None:
    plan = run([inst("a", 0), inst("c", 2)], proc(4))
    assert starts(plan) == [("p", 1, StartReason.MISSING), ("p", 3, StartReason.MISSING)]
    assert plan.stops == ()


# --- lost cells --------------------------------------------------------------------------------


def test_instances_on_a_lost_cell_are_re_placed_at_once_and_not_stopped() -> None:
    actual = [inst("a", 0), inst("b", 1, cell_id="dead"), inst("c", 2, cell_id="dead")]
    plan = run(actual, proc(3))
    assert starts(plan) == [
        ("p", 1, StartReason.LOST_WITH_CELL),
        ("p", 2, StartReason.LOST_WITH_CELL),
    ]
    assert [s.replaces for s in plan.starts] == ["b", "c"]
    assert plan.stops == ()


def test_a_cell_is_lost_only_after_three_missed_heartbeats() -> None:
    cells = {"c1": cell(last=NOW - 3 * HEARTBEAT)}
    plan = run([inst("a", 0)], proc(1), cells=cells)
    assert plan.empty
    assert plan.lost_cells == ()


def test_a_cell_marked_lost_is_lost_whatever_its_heartbeat() -> None:
    cells = {"c1": cell(state=CellState.LOST)}
    plan = run([inst("a", 0)], proc(1), cells=cells)
    assert starts(plan) == [("p", 0, StartReason.LOST_WITH_CELL)]
    assert plan.lost_cells == ("c1",)


def test_a_cell_nobody_heard_of_is_taken_at_its_word() -> None:
    plan = run([inst("a", 0, cell_id="unheard")], proc(1))
    assert plan.empty


def test_an_index_held_elsewhere_is_not_re_placed() -> None:
    plan = run([inst("a", 0, cell_id="dead"), inst("b", 0, cell_id="c2")], proc(1))
    assert plan.empty


def test_a_crash_record_on_a_lost_cell_is_lost_too() -> None:
    record = crashed("a", 0, count=9, at=NOW, cell_id="dead")
    plan = run([record], proc(1))
    assert starts(plan) == [("p", 0, StartReason.LOST_WITH_CELL)]
    assert plan.waiting == ()
    assert plan.stops == ()


# --- crashes -----------------------------------------------------------------------------------


def test_the_first_crashes_restart_at_once_and_the_record_is_stopped() -> None:
    plan = run([crashed("a", 0, count=2, at=NOW - 1)], proc(1))
    (start,) = plan.starts
    assert (start.reason, start.replaces, start.crash_count) == (StartReason.CRASHED, "a", 2)
    assert start.not_before == NOW - 1
    assert stops(plan) == {"a": StopReason.CRASHED}


def test_a_crash_within_its_back_off_waits() -> None:
    # The fifth crash waits 60 s, give or take 10%.
    plan = run([crashed("a", 0, count=5, at=NOW - 10)], proc(1))
    assert plan.starts == ()
    assert plan.stops == ()
    (waiting,) = plan.waiting
    assert (waiting.process_guid, waiting.index, waiting.instance_guid) == ("p", 0, "a")
    assert NOW - 10 + 54 <= waiting.restart_at <= NOW - 10 + 66
    assert plan.next_restart_at == waiting.restart_at


def test_a_waiting_restart_keeps_its_time_and_starts_once_due() -> None:
    actual = [crashed("a", 0, count=5, at=NOW)]
    first = run(actual, proc(1))
    restart_at = first.waiting[0].restart_at
    later = restart_at - 1
    fresh = {"c1": cell(last=later)}
    assert run(actual, proc(1), now=later, cells=fresh, fetched_at=later).waiting == first.waiting
    due = run(actual, proc(1), now=restart_at, cells=fresh, fetched_at=later)
    assert starts(due) == [("p", 0, StartReason.CRASHED)]
    assert due.starts[0].not_before == restart_at
    assert stops(due) == {"a": StopReason.CRASHED}


def test_the_crash_time_defaults_to_since() -> None:
    record = inst("a", 0, state=CRASHED, since=NOW - 1_000, crash_count=5)
    assert starts(run([record], proc(1))) == [("p", 0, StartReason.CRASHED)]


def test_the_longest_crash_history_governs_an_index() -> None:
    actual = [crashed("a", 0, count=1, at=NOW), crashed("b", 0, count=6, at=NOW, cell_id="c2")]
    plan = run(actual, proc(1))
    assert plan.starts == ()
    assert [w.instance_guid for w in plan.waiting] == ["b"]
    assert stops(plan) == {"a": StopReason.DUPLICATE}


def test_a_crash_record_beside_a_live_instance_is_a_duplicate() -> None:
    actual = [crashed("a", 0, count=6, at=NOW), inst("b", 0, cell_id="c2")]
    plan = run(actual, proc(1))
    assert plan.starts == ()
    assert plan.waiting == ()
    assert stops(plan) == {"a": StopReason.DUPLICATE}


def test_a_crash_record_wins_over_a_lost_duplicate() -> None:
    actual = [crashed("a", 0, count=6, at=NOW), inst("b", 0, cell_id="dead")]
    plan = run(actual, proc(1))
    assert plan.starts == ()
    assert [w.instance_guid for w in plan.waiting] == ["a"]


def test_a_crash_of_an_old_version_is_replaced_at_once() -> None:
    plan = run([crashed("a", 0, count=9, at=NOW, version="v1")], proc(1))
    assert starts(plan) == [("p", 0, StartReason.MISSING)]
    assert stops(plan) == {"a": StopReason.STALE_VERSION}
    assert plan.waiting == ()


# --- scaling, versions, duplicates -------------------------------------------------------------


def test_scale_down_stops_the_high_indices_crashed_included() -> None:
    actual = [
        inst("a", 0),
        inst("b", 1),
        crashed("c", 2, count=1, at=NOW),
        inst("d", 3, state=InstanceState.STARTING),
    ]
    plan = run(actual, proc(2))
    assert plan.starts == ()
    assert stops(plan) == {"c": StopReason.EXTRA_INDEX, "d": StopReason.EXTRA_INDEX}


def test_a_stopped_app_stops_everything_still_present() -> None:
    actual = [
        inst("a", 0),
        crashed("b", 1, count=1, at=NOW),
        inst("c", 2, state=InstanceState.EVACUATING),
        inst("d", 3, state=InstanceState.STOPPING),
        inst("e", 4, cell_id="dead"),
    ]
    plan = run(actual, proc(0))
    assert plan.starts == ()
    assert stops(plan) == dict.fromkeys("abc", StopReason.APP_STOPPED)


def test_a_new_version_replaces_every_instance() -> None:
    plan = run([inst("a", 0, version="v1"), inst("b", 1, version="v1")], proc(2))
    assert starts(plan) == [("p", 0, StartReason.MISSING), ("p", 1, StartReason.MISSING)]
    assert stops(plan) == {"a": StopReason.STALE_VERSION, "b": StopReason.STALE_VERSION}


def test_duplicates_keep_the_furthest_along_then_the_oldest_then_the_lowest_guid() -> None:
    actual = [
        inst("claimed", 0, state=InstanceState.CLAIMED, since=1.0),
        inst("running", 0, since=9.0),
        inst("starting", 0, state=InstanceState.STARTING, since=2.0),
        inst("b", 1, since=5.0),
        inst("a", 1, since=5.0),
        inst("c", 1, since=3.0),
    ]
    plan = run(actual, proc(2))
    assert plan.starts == ()
    assert stops(plan) == dict.fromkeys(("claimed", "starting", "a", "b"), StopReason.DUPLICATE)
    assert [s.instance_guid for s in plan.stops] == ["claimed", "starting", "a", "b"]


def test_evacuating_instances_are_replaced_and_left_to_leave() -> None:
    actual = [inst("a", 0, state=InstanceState.EVACUATING), inst("b", 1)]
    plan = run(actual, proc(2))
    assert starts(plan) == [("p", 0, StartReason.EVACUATING)]
    assert plan.starts[0].replaces == "a"
    assert plan.stops == ()


def test_instances_on_their_way_or_not_yet_on_a_cell_are_ignored() -> None:
    actual = [
        inst("a", 0, state=InstanceState.STOPPING),
        inst("b", 1, state=InstanceState.STOPPED),
        inst("c", 2, state=InstanceState.UNCLAIMED),
        inst("d", 9, state=InstanceState.STOPPING, version="v1"),
    ]
    plan = run(actual, proc(3))
    assert [s.index for s in plan.starts] == [0, 1, 2]
    assert plan.stops == ()


def test_a_guid_reported_twice_is_stopped_once() -> None:
    actual = [inst("a", 5), inst("a", 5, cell_id="c2")]
    plan = run(actual, proc(1))
    assert [s.instance_guid for s in plan.stops] == ["a"]


# --- unknown instances -------------------------------------------------------------------------


def test_an_unknown_instance_is_recorded_when_first_seen_and_not_stopped() -> None:
    plan = run([inst("x", 0, process="gone")], proc(0))
    assert plan.stops == ()
    assert plan.unknown_since == {"x": REFRESHES}


def test_an_unknown_instance_survives_one_refresh() -> None:
    plan = run([inst("x", 0, process="gone")], unknown_since={"x": REFRESHES - 1})
    assert plan.stops == ()
    assert plan.unknown_since == {"x": REFRESHES - 1}


def test_an_unknown_instance_is_stopped_after_two_refreshes() -> None:
    actual = [
        inst("x", 0, process="gone", state=CRASHED),
        inst("y", 1, process="gone", cell_id="dead"),
        inst("z", 2, process="gone", state=InstanceState.STOPPING),
    ]
    unknown_since = {"x": REFRESHES - 2, "y": REFRESHES - 2, "known": 1}
    plan = run(actual, unknown_since=unknown_since)
    assert plan.starts == ()
    assert stops(plan) == {"x": StopReason.UNKNOWN}
    # Still unknown: kept; on its way out, or known again, or gone: forgotten.
    assert plan.unknown_since == {"x": REFRESHES - 2, "y": REFRESHES - 2}


def test_the_grace_is_a_policy() -> None:
    actual = [inst("x", 0, process="gone")]
    plan = converge(
        desired(),
        actual,
        CELLS,
        NOW,
        unknown_since={"x": REFRESHES - 1},
        policy=ConvergePolicy(unknown_grace_refreshes=1),
    )
    assert stops(plan) == {"x": StopReason.UNKNOWN}


# --- freshness guards --------------------------------------------------------------------------


def test_stale_desired_state_starts_but_never_stops() -> None:
    actual = [
        inst("a", 0, version="v1"),
        inst("b", 3),
        inst("c", 1, cell_id="dead"),
        crashed("d", 2, count=1, at=NOW),
        inst("x", 0, process="gone"),
    ]
    plan = run(actual, proc(3), fetched_at=NOW - STALE_AFTER - 1, unknown_since={"x": 1})
    assert plan.freshness is Freshness.STALE
    assert plan.stops == ()
    assert starts(plan) == [
        ("p", 1, StartReason.LOST_WITH_CELL),
        ("p", 0, StartReason.MISSING),
        ("p", 2, StartReason.CRASHED),
    ]
    assert plan.unknown_since == {"x": 1}


def test_desired_state_two_intervals_old_is_still_fresh() -> None:
    plan = run([inst("a", 3)], proc(1), fetched_at=NOW - STALE_AFTER)
    assert plan.freshness is Freshness.FRESH
    assert stops(plan) == {"a": StopReason.EXTRA_INDEX}


def test_the_refresh_interval_is_a_policy() -> None:
    state = desired(proc(1), fetched_at=NOW - 25)
    plan = converge(
        state, [inst("a", 3)], CELLS, NOW, policy=ConvergePolicy(desired_refresh_interval=10.0)
    )
    assert plan.freshness is Freshness.STALE
    assert plan.stops == ()


def test_unavailable_desired_state_does_nothing() -> None:
    actual = [inst("a", 0, cell_id="dead"), crashed("b", 1, count=1, at=NOW), inst("x", 9)]
    plan = converge(None, actual, CELLS, NOW, unknown_since={"x": 1})
    assert plan == Plan(Freshness.UNAVAILABLE, (), (), (), ("dead",), {"x": 1})


# --- ranking -----------------------------------------------------------------------------------


def test_starts_rank_lost_then_evacuating_then_missing_then_crashed() -> None:
    actual = [
        crashed("a", 0, count=1, at=NOW, process="a"),
        inst("m", 0, process="m", state=InstanceState.EVACUATING),
        inst("z", 0, process="z", cell_id="dead"),
    ]
    processes = [proc(1, guid="a"), proc(2, guid="m"), proc(1, guid="z")]
    plan = run(actual, *processes)
    assert starts(plan) == [
        ("z", 0, StartReason.LOST_WITH_CELL),
        ("m", 0, StartReason.EVACUATING),
        ("m", 1, StartReason.MISSING),
        ("a", 0, StartReason.CRASHED),
    ]


def test_waiting_restarts_are_in_due_order() -> None:
    actual = [
        crashed("a", 0, count=9, at=NOW, process="a"),
        crashed("b", 0, count=4, at=NOW, process="b"),
    ]
    plan = run(actual, proc(1, guid="a"), proc(1, guid="b"))
    assert [w.process_guid for w in plan.waiting] == ["b", "a"]


def test_bad_desired_state_is_refused() -> None:
    with pytest.raises(ValueError):
        proc(-1)
    with pytest.raises(ValueError):
        DesiredState({}, NOW, 0)


@pytest.mark.parametrize(
    "fields",
    [
        {"desired_refresh_interval": 0.0},
        {"stale_after_refreshes": 0.0},
        {"missed_heartbeats_for_lost": 0},
        {"unknown_grace_refreshes": 0},
        {"jitter_fraction": 1.0},
    ],
)
def test_a_policy_that_defeats_a_guard_is_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ConvergePolicy(**fields)  # type: ignore[arg-type]


# --- properties --------------------------------------------------------------------------------

PROCESSES = ("p0", "p1", "p2", "p3")
CELL_IDS = ("c0", "c1", "c2", "c3")


# Weighted by repetition, so that most cells are alive and most instances healthy or crashed:
# the interesting plans need indices that collide.
CELL_STATES = (CellState.ENABLED,) * 4 + (CellState.DRAINING, CellState.LOST)
HEARTBEAT_AGES = (0.0, 0.0, 10.0, 15.0, 16.0)
STATES = (RUNNING, RUNNING, CRASHED, CRASHED, *InstanceState)
VERSIONS = ("v2", "v2", "v1")

World = tuple[DesiredState | None, list[ActualInstance], dict[str, CellHealth], dict[str, int]]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    cells = {
        cell_id: CellHealth(
            state=draw(st.sampled_from(CELL_STATES)),
            last_heartbeat_at=NOW - draw(st.sampled_from(HEARTBEAT_AGES)),
            heartbeat_interval=HEARTBEAT,
        )
        for cell_id in CELL_IDS
    }
    actual = [
        ActualInstance(
            instance_guid=f"g{n:02d}",
            # p3 is never desired: its instances are unknown.
            process_guid=draw(st.sampled_from(PROCESSES)),
            cell_id=draw(st.sampled_from(CELL_IDS)),
            index=draw(st.sampled_from((-1, 0, 0, 1, 1, 2, 3))),
            version=draw(st.sampled_from(VERSIONS)),
            state=draw(st.sampled_from(STATES)),
            since=draw(st.sampled_from((1.0, 2.0, NOW - 50))),
            crash_count=draw(st.sampled_from(range(9))),
            crashed_at=draw(st.sampled_from((None, NOW, NOW - 100.0, NOW - 2_000.0))),
        )
        for n in range(draw(st.integers(0, 24) | st.integers(12, 24)))
    ]
    unknown_since = {
        i.instance_guid: draw(st.integers(1, REFRESHES)) for i in actual if draw(st.booleans())
    }
    if draw(st.sampled_from(range(10))) == 0:
        return None, actual, cells, unknown_since
    processes = {
        guid: DesiredProcess(guid, f"app-{guid}", draw(st.sampled_from(VERSIONS)), count)
        for guid in PROCESSES[:3]
        if (count := draw(st.sampled_from((-1, 0, 1, 2, 3)))) >= 0
    }
    age = draw(st.sampled_from((0.0, 0.0, STALE_AFTER, STALE_AFTER + 1)))
    return DesiredState(processes, NOW - age, REFRESHES), actual, cells, unknown_since


def _plan(world: World) -> Plan:
    state, actual, cells, unknown_since = world
    return converge(state, actual, cells, NOW, unknown_since=unknown_since)


def _lost(cells: dict[str, CellHealth]) -> set[str]:
    return {
        cell_id
        for cell_id, c in cells.items()
        if c.state is CellState.LOST or NOW - c.last_heartbeat_at > 3 * HEARTBEAT
    }


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_every_unsatisfied_index_is_planned_exactly_once(world: World) -> None:
    state, actual, cells, _ = world
    plan = _plan(world)
    if state is None:
        return
    lost = _lost(cells)
    planned = [(s.process_guid, s.index) for s in plan.starts]
    planned += [(w.process_guid, w.index) for w in plan.waiting]
    assert len(planned) == len(set(planned))
    unsatisfied = {
        (guid, index)
        for guid, want in state.processes.items()
        for index in range(want.instances)
        if not any(
            a.process_guid == guid
            and a.index == index
            and a.version == want.version
            and a.state in LIVE_STATES
            and a.cell_id not in lost
            for a in actual
        )
    }
    assert set(planned) == unsatisfied
    assert all(s.not_before <= NOW for s in plan.starts)
    assert all(w.restart_at > NOW for w in plan.waiting)


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_never_more_running_than_desired(world: World) -> None:
    state, actual, cells, _ = world
    plan = _plan(world)
    if state is None or plan.freshness is not Freshness.FRESH:
        return
    lost = _lost(cells)
    stopped = {s.instance_guid for s in plan.stops}
    for guid, want in state.processes.items():
        running_after = [
            a
            for a in actual
            if a.process_guid == guid
            and a.state in LIVE_STATES
            and a.cell_id not in lost
            and a.instance_guid not in stopped
        ]
        started = [s for s in plan.starts if s.process_guid == guid]
        waiting = [w for w in plan.waiting if w.process_guid == guid]
        # Each index: one kept instance, one start, or one waiting restart.
        assert len(running_after) + len(started) + len(waiting) == want.instances


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_stops_are_safe(world: World) -> None:
    state, actual, cells, unknown_since = world
    plan = _plan(world)
    by_guid = {a.instance_guid: a for a in actual}
    lost = _lost(cells)
    stopped = [s.instance_guid for s in plan.stops]
    assert len(stopped) == len(set(stopped))
    if state is None or plan.freshness is not Freshness.FRESH:
        assert plan.stops == ()
    if state is None:
        assert plan.starts == () and plan.waiting == ()
        assert plan.unknown_since == unknown_since
        return
    # Freshness holds back stops only: the same world when fresh starts and waits the same.
    fresh = DesiredState(state.processes, NOW, state.refreshes)
    fresh_plan = converge(fresh, actual, cells, NOW, unknown_since=unknown_since)
    assert (fresh_plan.starts, fresh_plan.waiting) == (plan.starts, plan.waiting)
    replaced = {s.replaces for s in plan.starts if s.reason is StartReason.CRASHED}
    for stop in plan.stops:
        target = by_guid[stop.instance_guid]
        assert target.state in STOPPABLE
        assert target.cell_id not in lost
        if target.process_guid not in state.processes:
            assert stop.reason is StopReason.UNKNOWN
            assert state.refreshes - unknown_since[stop.instance_guid] >= 2
        if stop.reason is StopReason.CRASHED:
            assert stop.instance_guid in replaced


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_unknown_processes_get_nothing_but_tracked_stops(world: World) -> None:
    state, actual, _, unknown_since = world
    plan = _plan(world)
    if state is None:
        return
    assert {s.process_guid for s in plan.starts} <= set(state.processes)
    assert {w.process_guid for w in plan.waiting} <= set(state.processes)
    expected = {
        a.instance_guid: unknown_since.get(a.instance_guid, state.refreshes)
        for a in actual
        if a.process_guid not in state.processes and a.state in STOPPABLE
    }
    assert plan.unknown_since == expected


def _rank(start: StartAction) -> int:
    return list(StartReason).index(start.reason)


@settings(max_examples=150, deadline=None)
@given(worlds(), st.randoms(use_true_random=False))
def test_the_plan_is_ranked_and_does_not_depend_on_input_order(
    world: World, rng: random.Random
) -> None:
    state, actual, cells, unknown_since = world
    plan = _plan(world)
    ranks = [_rank(s) for s in plan.starts]
    assert ranks == sorted(ranks)
    shuffled = list(actual)
    rng.shuffle(shuffled)
    assert converge(state, shuffled, cells, NOW, unknown_since=unknown_since) == plan
