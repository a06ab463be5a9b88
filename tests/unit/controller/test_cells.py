"""The controller's view of the cells: the newest report of each instance wins, whatever order
heartbeats, events and replies arrive in."""

from __future__ import annotations

from typing import Any

from overcast.bus.messages import Heartbeat, InstanceReport, Resources
from overcast.bus.reports import apply_report, merge_heartbeat
from overcast.controller.cells import CellDirectory
from overcast.models.instances import CellState, InstanceState


def report(guid: str, seq: int, state: InstanceState = InstanceState.RUNNING) -> InstanceReport:
    return InstanceReport(
        instance_guid=guid,
        process_guid="p",
        process_type="web",
        app_guid="a",
        index=0,
        version="v",
        state=state,
        since=1.0,
        host="127.0.0.1",
        port=61000,
        memory_mb=256,
        disk_mb=1024,
        seq=seq,
    )


def heartbeat(seq: int, *instances: InstanceReport, **changes: Any) -> Heartbeat:
    values: dict[str, Any] = {
        "cell_id": "c1",
        "zone": "z1",
        "state": CellState.ENABLED,
        "host": "127.0.0.1",
        "stacks": ["overcast-linux"],
        "capacity": Resources(memory_mb=4096, disk_mb=8192, containers=10),
        "allocated": Resources(memory_mb=0, disk_mb=0, containers=0),
        "instances": list(instances),
        "seq": seq,
        "interval_seconds": 1.0,
        "sent_at": 100.0,
        "started_at": 1.0,
    }
    values.update(changes)
    return Heartbeat(**values)


def test_a_heartbeat_replaces_what_it_knows_about() -> None:
    known = {"old": report("old", 1)}
    merged = merge_heartbeat(known, heartbeat(5, report("new", 4)))
    assert set(merged) == {"new"}  # "old" is gone: the newer heartbeat no longer lists it


def test_a_report_newer_than_the_heartbeat_survives_it() -> None:
    # A start accepted (seq 7) after the heartbeat was sent (seq 6) but received before it.
    known = {"fresh": report("fresh", 7, InstanceState.CLAIMED)}
    merged = merge_heartbeat(known, heartbeat(6))
    assert merged["fresh"].state == InstanceState.CLAIMED


def test_a_late_heartbeat_cannot_bring_a_stopped_instance_back() -> None:
    known = {"x": report("x", 9, InstanceState.STOPPED)}
    merged = merge_heartbeat(known, heartbeat(8, report("x", 3, InstanceState.RUNNING)))
    assert merged["x"].state == InstanceState.STOPPED


def test_an_older_event_does_not_overwrite_a_newer_one() -> None:
    known = {"x": report("x", 5, InstanceState.RUNNING)}
    apply_report(known, report("x", 4, InstanceState.STARTING))
    assert known["x"].state == InstanceState.RUNNING
    apply_report(known, report("x", 6, InstanceState.CRASHED))
    assert known["x"].state == InstanceState.CRASHED


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_directory_lists_live_instances_and_marks_silent_cells_lost() -> None:
    clock = FakeTime()
    directory = CellDirectory(bus=None, requester="test", monotonic=clock)  # type: ignore[arg-type]
    directory.observe_heartbeat(heartbeat(2, report("a", 1), report("b", 2, InstanceState.STOPPED)))
    assert [p.report.instance_guid for p in directory.instances(process_guid="p")] == ["a"]
    record = directory.cell("c1")
    assert record is not None and directory.cell_state(record) == CellState.ENABLED
    assert [view.cell_id for view in directory.placement_views()] == ["c1"]
    clock.now += 3.5  # more than three missed one-second heartbeats
    assert directory.cell_state(record) == CellState.LOST
    assert directory.placement_views() == []


def test_reports_before_the_first_heartbeat_are_kept() -> None:
    directory = CellDirectory(bus=None, requester="test", monotonic=FakeTime())  # type: ignore[arg-type]
    directory.observe_report("c1", report("early", 3, InstanceState.CLAIMED))
    directory.observe_heartbeat(heartbeat(2))
    assert [p.report.instance_guid for p in directory.instances()] == ["early"]


def test_allocation_counts_a_start_accepted_since_the_heartbeat() -> None:
    directory = CellDirectory(bus=None, requester="test", monotonic=FakeTime())  # type: ignore[arg-type]
    directory.observe_heartbeat(heartbeat(1))
    directory.observe_report("c1", report("new", 2, InstanceState.CLAIMED))
    record = directory.cell("c1")
    assert record is not None and record.allocated() == (256, 1024, 1)
    (view,) = directory.placement_views()
    assert view.allocated.memory_mb == 256 and view.process_instances == {"p": 1}
