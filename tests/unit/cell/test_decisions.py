"""The start/stop decisions: idempotent, versioned, and refusing with a reason."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from overcast.bus.messages import (
    Checksum,
    DropletSource,
    InstanceSpec,
    Resources,
    StagingSpec,
    StopInstance,
)
from overcast.cell.decisions import (
    CellProfile,
    allocated,
    decide_stage,
    decide_start,
    decide_stop,
    used_by,
)
from overcast.cell.table import CellTable, InstanceRecord
from overcast.models.instances import CellState, InstanceState, RejectReason

PROFILE = CellProfile(
    stacks=frozenset({"overcast-linux"}),
    tags=frozenset({"ssd", "eu"}),
    capacity=Resources(memory_mb=1024, disk_mb=2048, containers=3),
)


def spec(guid: str = "i-1", **fields: Any) -> InstanceSpec:
    values: dict[str, Any] = {
        "instance_guid": guid,
        "process_guid": "p-1",
        "process_type": "web",
        "index": 0,
        "version": "v1",
        "app_guid": "a-1",
        "app_name": "hello",
        "space_guid": "s-1",
        "org_guid": "o-1",
        "droplet": DropletSource(guid="d-1", url="http://x/d", checksum=Checksum(value="0" * 64)),
        "command": "true",
        "memory_mb": 256,
        "disk_mb": 512,
        "stack": "overcast-linux",
    }
    values.update(fields)
    return InstanceSpec(**values)


def table_with(*records: tuple[InstanceSpec, InstanceState]) -> CellTable:
    table = CellTable(cell_id="c1")
    for item, state in records:
        table.add(InstanceRecord(spec=item, state=state, since=0.0))
    return table


def test_a_fitting_start_is_accepted() -> None:
    decision = decide_start(spec(), CellTable(cell_id="c1"), PROFILE)
    assert decision.accepted and decision.record is None


@pytest.mark.parametrize("state", list(InstanceState))
def test_a_repeated_start_is_a_no_op_whatever_the_state(state: InstanceState) -> None:
    table = table_with((spec(), state))
    decision = decide_start(spec(), table, PROFILE)
    assert decision.accepted
    assert decision.record is table.instances["i-1"]


def test_a_start_of_a_tombstoned_guid_is_stale() -> None:
    table = CellTable(cell_id="c1")
    table.forget("i-1")
    decision = decide_start(spec(), table, PROFILE)
    assert (decision.accepted, decision.reason) == (False, RejectReason.STALE)


def test_a_twin_of_a_live_instance_is_a_no_op() -> None:
    table = table_with((spec("i-1"), InstanceState.RUNNING))
    decision = decide_start(spec("i-2"), table, PROFILE)
    assert decision.accepted and decision.record is table.instances["i-1"]


def test_a_twin_of_a_crashed_instance_is_started() -> None:
    table = table_with((spec("i-1"), InstanceState.CRASHED))
    decision = decide_start(spec("i-2"), table, PROFILE)
    assert decision.accepted and decision.record is None


def test_another_version_of_the_same_index_is_started() -> None:
    table = table_with((spec("i-1"), InstanceState.RUNNING))
    decision = decide_start(spec("i-2", version="v2"), table, PROFILE)
    assert decision.accepted and decision.record is None


@pytest.mark.parametrize(
    ("cell_state", "fields", "reason"),
    [
        (CellState.DISABLED, {}, RejectReason.DISABLED),
        (CellState.DRAINING, {}, RejectReason.DRAINING),
        (CellState.ENABLED, {"stack": "windows"}, RejectReason.WRONG_STACK),
        (CellState.ENABLED, {"tags": ["gpu"]}, RejectReason.MISSING_TAGS),
        (CellState.ENABLED, {"memory_mb": 2000}, RejectReason.NO_ROOM),
        (CellState.ENABLED, {"disk_mb": 4096}, RejectReason.NO_ROOM),
        (CellState.ENABLED, {"instance_guid": "../etc"}, RejectReason.INVALID),
    ],
)
def test_rejections(cell_state: CellState, fields: dict[str, Any], reason: RejectReason) -> None:
    table = CellTable(cell_id="c1", state=cell_state)
    decision = decide_start(spec(**fields), table, PROFILE)
    assert (decision.accepted, decision.reason) == (False, reason)
    assert decision.detail


def test_tags_that_the_cell_has_are_fine() -> None:
    assert decide_start(spec(tags=["eu"]), CellTable(cell_id="c1"), PROFILE).accepted


def test_room_counts_allocating_states_only() -> None:
    table = table_with(
        (spec("i-1", process_guid="p-a", memory_mb=512), InstanceState.RUNNING),
        (spec("i-2", process_guid="p-b", memory_mb=256), InstanceState.STOPPING),
        (spec("i-3", process_guid="p-c", memory_mb=900), InstanceState.CRASHED),
    )
    assert allocated(table.instances.values()) == Resources(
        memory_mb=768, disk_mb=1024, containers=2
    )
    assert decide_start(spec("i-4", process_guid="p-d"), table, PROFILE).accepted
    too_big = decide_start(spec("i-5", process_guid="p-e", memory_mb=257), table, PROFILE)
    assert too_big.reason == RejectReason.NO_ROOM
    assert "256 MB free" in (too_big.detail or "")


def test_container_slots() -> None:
    table = table_with(
        *(
            (spec(f"i-{n}", process_guid=f"p-{n}", memory_mb=1), InstanceState.CLAIMED)
            for n in range(3)
        )
    )
    decision = decide_start(spec("i-9", process_guid="p-x", memory_mb=1, disk_mb=1), table, PROFILE)
    assert decision.reason == RejectReason.NO_ROOM
    assert "container slots" in (decision.detail or "")


def test_stop_of_unknown_or_tombstoned_is_a_no_op() -> None:
    table = CellTable(cell_id="c1")
    table.forget("i-gone")
    for guid in ("i-unknown", "i-gone"):
        decision = decide_stop(StopInstance(instance_guid=guid, version="v1"), table)
        assert decision.accepted and decision.record is None


def test_stop_of_another_version_is_stale() -> None:
    table = table_with((spec(), InstanceState.RUNNING))
    decision = decide_stop(StopInstance(instance_guid="i-1", version="v0"), table)
    assert (decision.accepted, decision.reason) == (False, RejectReason.STALE)


@pytest.mark.parametrize(
    "state",
    [InstanceState.CLAIMED, InstanceState.STARTING, InstanceState.RUNNING, InstanceState.CRASHED],
)
def test_stop_of_a_held_instance(state: InstanceState) -> None:
    table = table_with((spec(), state))
    decision = decide_stop(StopInstance(instance_guid="i-1", version="v1"), table)
    assert decision.accepted and decision.record is table.instances["i-1"]


def test_stop_of_a_stopping_instance_is_a_no_op() -> None:
    table = table_with((spec(), InstanceState.STOPPING))
    decision = decide_stop(StopInstance(instance_guid="i-1", version="v1"), table)
    assert decision.accepted and decision.record is None


def staging_spec(**fields: Any) -> StagingSpec:
    values: dict[str, Any] = {
        "build_guid": "b-1",
        "app_guid": "a-1",
        "droplet_guid": "d-1",
        "package_url": "http://x/p",
        "droplet_upload_url": "http://x/d",
        "failure_url": "http://x/f",
        "stack": "overcast-linux",
        "memory_mb": 512,
        "disk_mb": 1024,
        "timeout_seconds": 60.0,
        "max_package_bytes": 1 << 20,
    }
    values.update(fields)
    return StagingSpec(**values)


def test_a_fitting_stage_is_accepted_and_a_repeat_too() -> None:
    table = CellTable(cell_id="c1")
    assert decide_stage(staging_spec(), table, PROFILE, in_progress=False).accepted
    full = dataclasses.replace(PROFILE, staging=Resources(memory_mb=1024, disk_mb=0, containers=1))
    # Already staging this build: accepted again whatever the room.
    assert decide_stage(staging_spec(), table, full, in_progress=True).accepted


@pytest.mark.parametrize(
    ("fields", "state", "reason"),
    [
        ({"stack": "windows"}, CellState.ENABLED, RejectReason.WRONG_STACK),
        ({}, CellState.DISABLED, RejectReason.DISABLED),
        ({}, CellState.DRAINING, RejectReason.DRAINING),
        ({"memory_mb": 2048}, CellState.ENABLED, RejectReason.NO_ROOM),
        ({"disk_mb": 4096}, CellState.ENABLED, RejectReason.NO_ROOM),
        ({"build_guid": "../escape"}, CellState.ENABLED, RejectReason.INVALID),
    ],
)
def test_stage_refusals(fields: dict[str, Any], state: CellState, reason: RejectReason) -> None:
    table = CellTable(cell_id="c1")
    table.state = state
    decision = decide_stage(staging_spec(**fields), table, PROFILE, in_progress=False)
    assert not decision.accepted and decision.reason == reason


def test_stagings_take_room_from_instances_and_the_other_way_round() -> None:
    staging = dataclasses.replace(
        PROFILE, staging=Resources(memory_mb=900, disk_mb=100, containers=1)
    )
    refused = decide_start(spec(), CellTable(cell_id="c1"), staging)
    assert refused.reason == RejectReason.NO_ROOM
    busy = table_with((spec(memory_mb=900), InstanceState.RUNNING))
    refused_stage = decide_stage(staging_spec(), busy, PROFILE, in_progress=False)
    assert refused_stage.reason == RejectReason.NO_ROOM
    assert used_by(busy, staging).memory_mb == 1800
