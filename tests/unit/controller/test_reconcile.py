"""Desired against actual for one process (controller/reconcile.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overcast.controller.reconcile import (
    ActualInstance,
    DesiredProcess,
    ReconcilePlan,
    StopReason,
    reconcile,
)
from overcast.models.instances import LIVE_STATES, InstanceState

PRESENT = LIVE_STATES | {InstanceState.CRASHED}
IGNORED = frozenset({InstanceState.STOPPING, InstanceState.STOPPED, InstanceState.UNCLAIMED})


def instance(
    guid: str,
    index: int,
    *,
    version: str = "v2",
    state: InstanceState = InstanceState.RUNNING,
    since: float = 100.0,
) -> ActualInstance:
    return ActualInstance(
        instance_guid=guid, cell_id="cell-1", index=index, version=version, state=state, since=since
    )


def desired(instances: int, version: str = "v2") -> DesiredProcess:
    return DesiredProcess(process_guid="p", version=version, instances=instances)


def stops(plan: ReconcilePlan) -> dict[str, StopReason]:
    return {stop.instance.instance_guid: stop.reason for stop in plan.stops}


# --- properties --------------------------------------------------------------------------------


@st.composite
def actual_instances(draw: st.DrawFn) -> list[ActualInstance]:
    count = draw(st.integers(0, 15))
    return [
        ActualInstance(
            instance_guid=f"g{n:02d}",
            cell_id=draw(st.sampled_from(("c1", "c2"))),
            index=draw(st.integers(0, 6)),
            version=draw(st.sampled_from(("v1", "v2"))),
            state=draw(st.sampled_from(list(InstanceState))),
            since=draw(st.sampled_from((1.0, 2.0, 3.0))),
        )
        for n in range(count)
    ]


def _satisfies(want: DesiredProcess, inst: ActualInstance, index: int) -> bool:
    return inst.index == index and inst.version == want.version and inst.state in PRESENT


@settings(max_examples=500, deadline=None)
@given(st.integers(0, 6), st.sampled_from(("v1", "v2")), actual_instances())
def test_plan_converges_in_one_step(
    instances: int, version: str, actual: list[ActualInstance]
) -> None:
    want = desired(instances, version)
    plan = reconcile(want, actual)
    stopped = {stop.instance.instance_guid for stop in plan.stops}

    # Starts: sorted, each once, exactly the indices no instance satisfies.
    missing = [i for i in range(instances) if not any(_satisfies(want, a, i) for a in actual)]
    assert list(plan.starts) == missing
    assert len(set(plan.starts)) == len(plan.starts)

    # Nothing already on its way out is stopped again; nothing is stopped twice.
    assert all(stop.instance.state not in IGNORED for stop in plan.stops)
    assert len(stopped) == len(plan.stops)

    # After applying the plan: one live-or-crashed instance per index in range, of the
    # desired version, and none anywhere else.
    after = [a for a in actual if a.instance_guid not in stopped and a.state in PRESENT]
    per_index = Counter(a.index for a in after) + Counter(plan.starts)
    assert per_index == Counter(range(instances))
    assert all(a.version == version for a in after)

    # Same input, same plan; the order of the input does not matter.
    assert reconcile(want, list(reversed(actual))) == plan


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(("v1", "v2")), actual_instances())
def test_a_stopped_app_stops_everything_still_present(
    version: str, actual: list[ActualInstance]
) -> None:
    plan = reconcile(desired(0, version), actual)
    assert plan.starts == ()
    expected = {a.instance_guid for a in actual if a.state in PRESENT | {InstanceState.EVACUATING}}
    assert stops(plan) == dict.fromkeys(expected, StopReason.APP_STOPPED)


# --- examples ----------------------------------------------------------------------------------


def test_starts_every_index_of_a_new_process() -> None:
    assert reconcile(desired(3), []) == ReconcilePlan(starts=(0, 1, 2), stops=())


def test_nothing_to_do_when_converged() -> None:
    actual = [
        instance("a", 0),
        instance("b", 1, state=InstanceState.STARTING),
        instance("c", 2, state=InstanceState.CLAIMED),
    ]
    plan = reconcile(desired(3), actual)
    assert plan.empty


def test_crashed_instances_hold_their_index() -> None:
    plan = reconcile(desired(2), [instance("a", 0, state=InstanceState.CRASHED), instance("b", 1)])
    assert plan.empty


def test_scale_up_starts_only_the_new_indices() -> None:
    plan = reconcile(desired(4), [instance("a", 0), instance("b", 1)])
    assert plan.starts == (2, 3)
    assert plan.stops == ()


def test_scale_down_stops_the_high_indices_crashed_included() -> None:
    actual = [
        instance("a", 0),
        instance("b", 1),
        instance("c", 2, state=InstanceState.CRASHED),
        instance("d", 3, state=InstanceState.STARTING),
    ]
    plan = reconcile(desired(2), actual)
    assert plan.starts == ()
    assert stops(plan) == {"c": StopReason.SCALED_DOWN, "d": StopReason.SCALED_DOWN}


def test_a_new_version_replaces_every_instance() -> None:
    actual = [
        instance("a", 0, version="v1"),
        instance("b", 1, version="v1", state=InstanceState.CRASHED),
    ]
    plan = reconcile(desired(2, "v2"), actual)
    assert plan.starts == (0, 1)
    assert stops(plan) == {"a": StopReason.STALE_VERSION, "b": StopReason.STALE_VERSION}


def test_out_of_range_wins_over_stale_version() -> None:
    plan = reconcile(desired(1, "v2"), [instance("a", 5, version="v1")])
    assert stops(plan) == {"a": StopReason.SCALED_DOWN}
    assert plan.starts == (0,)


def test_duplicates_keep_running_over_starting_over_claimed_over_crashed() -> None:
    actual = [
        instance("claimed", 0, state=InstanceState.CLAIMED, since=1.0),
        instance("crashed", 0, state=InstanceState.CRASHED, since=0.5),
        instance("running", 0, state=InstanceState.RUNNING, since=9.0),
        instance("starting", 0, state=InstanceState.STARTING, since=2.0),
    ]
    plan = reconcile(desired(1), actual)
    assert plan.starts == ()
    assert stops(plan) == dict.fromkeys(("claimed", "crashed", "starting"), StopReason.DUPLICATE)


def test_duplicates_then_keep_the_oldest_then_the_lowest_guid() -> None:
    actual = [
        instance("b", 0, since=5.0),
        instance("c", 0, since=3.0),
        instance("a", 0, since=7.0),
        instance("z", 1, since=4.0),
        instance("y", 1, since=4.0),
    ]
    plan = reconcile(desired(2), actual)
    assert stops(plan) == dict.fromkeys(("a", "b", "z"), StopReason.DUPLICATE)
    assert [stop.instance.instance_guid for stop in plan.stops] == ["a", "b", "z"]


def test_stopping_and_stopped_instances_are_ignored() -> None:
    actual = [
        instance("old", 0, state=InstanceState.STOPPING),
        instance("gone", 1, state=InstanceState.STOPPED),
        instance("far", 9, state=InstanceState.STOPPING, version="v1"),
    ]
    plan = reconcile(desired(2), actual)
    assert plan.starts == (0, 1)
    assert plan.stops == ()


def test_evacuating_instances_are_replaced_and_stopped_only_when_unwanted() -> None:
    actual = [
        instance("moving", 0, state=InstanceState.EVACUATING),
        instance("obsolete", 1, state=InstanceState.EVACUATING, version="v1"),
        instance("extra", 5, state=InstanceState.EVACUATING),
    ]
    plan = reconcile(desired(2), actual)
    assert plan.starts == (0, 1)
    assert stops(plan) == {"obsolete": StopReason.STALE_VERSION, "extra": StopReason.SCALED_DOWN}


def test_stopping_the_app_uses_its_own_reason() -> None:
    actual = [instance("a", 0), instance("b", 1, state=InstanceState.CRASHED, version="v1")]
    plan = reconcile(desired(0), actual)
    assert stops(plan) == {"a": StopReason.APP_STOPPED, "b": StopReason.APP_STOPPED}


def test_negative_instances_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        desired(-1)
