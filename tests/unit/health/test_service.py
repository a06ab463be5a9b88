"""The health service's loop logic, driven by hand: heartbeats and events in, a fake controller
port out, a fake wall clock. converge() itself is tested in test_converge.py; here: warm-up,
crash reports sent once, asks not repeated while in flight, failures retried, and no action
without desired state."""

from __future__ import annotations

import asyncio
from typing import Any

from overcast.bus.base import Message
from overcast.bus.memory import MemoryBus
from overcast.bus.messages import Heartbeat, InstanceEvent, InstanceReport, Resources
from overcast.health.service import HealthOptions, HealthService
from overcast.models.instances import CellState, InstanceState

APP, PROCESS = "app-1", "process-1"


class FakePort:
    def __init__(self, instances: int = 2) -> None:
        self.instances = instances
        self.available = True
        self.failing_acts = 0
        self.refusing_stops = False
        self.refusing_starts = False
        self.requests: list[dict[str, Any]] = []

    async def desired(self) -> dict[str, Any]:
        if not self.available:
            raise ConnectionError("controller down")
        process = {
            "process_guid": PROCESS,
            "app_guid": APP,
            "version": "v1",
            "instances": self.instances,
        }
        return {"generated_at": 0.0, "processes": [process]}

    async def act(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        if self.failing_acts:
            self.failing_acts -= 1
            raise ConnectionError("controller down")
        return {
            "starts": [
                {
                    "process_guid": s["process_guid"],
                    "index": s["index"],
                    "accepted": not self.refusing_starts,
                }
                for s in request["starts"]
            ],
            "stops": [
                {"instance_guid": s["instance_guid"], "accepted": not self.refusing_stops}
                for s in request["stops"]
            ],
        }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def report(index: int, state: InstanceState, *, seq: int, crash_count: int = 0) -> InstanceReport:
    return InstanceReport(
        instance_guid=f"i-{index}",
        process_guid=PROCESS,
        process_type="web",
        app_guid=APP,
        index=index,
        version="v1",
        state=state,
        since=900.0,
        host="127.0.0.1",
        memory_mb=64,
        disk_mb=64,
        seq=seq,
        reason="CRASHED" if state == InstanceState.CRASHED else None,
        exit_status=1 if state == InstanceState.CRASHED else None,
        detail="exited with status 1" if state == InstanceState.CRASHED else None,
        crash_count=crash_count,
    )


def heartbeat(cell: str, seq: int, *instances: InstanceReport) -> Heartbeat:
    return Heartbeat(
        cell_id=cell,
        zone="z1",
        state=CellState.ENABLED,
        host="127.0.0.1",
        stacks=["overcast-linux"],
        capacity=Resources(memory_mb=4096, disk_mb=4096, containers=100),
        allocated=Resources(memory_mb=0, disk_mb=0, containers=0),
        instances=list(instances),
        seq=seq,
        interval_seconds=1.0,
        sent_at=0.0,
        started_at=1.0,
    )


async def _service(port: FakePort, clock: Clock) -> HealthService:
    bus = MemoryBus(name="health-test")
    await bus.connect()
    service = HealthService(bus, port, HealthOptions(warm_up_seconds=2.0), wall=clock)
    service._started_at = clock.now  # as start() would, without its background tasks
    return service


async def _crash(service: HealthService, index: int, *, seq: int, crash_count: int) -> None:
    crashed = report(index, InstanceState.CRASHED, seq=seq, crash_count=crash_count)
    event = InstanceEvent(
        cell_id="c1",
        instance=crashed,
        from_state=InstanceState.RUNNING,
        to_state=InstanceState.CRASHED,
    )
    await service._on_event(_message(event.wire()))


def _message(data: dict[str, Any]) -> Message:
    return Message(subject="instance.event", data=data)


async def test_nothing_is_done_before_a_heartbeat_round_was_heard() -> None:
    port, clock = FakePort(), Clock()
    service = await _service(port, clock)
    await service.refresh_desired()
    assert await service.converge_once() is None  # no heartbeat yet
    service.actual.observe_heartbeat(heartbeat("c1", 1), clock.now)
    assert await service.converge_once() is None  # heard one, but too soon after start
    assert port.requests == []


async def test_a_crash_is_restarted_once_and_reported_once() -> None:
    port, clock = FakePort(), Clock()
    service = await _service(port, clock)
    await service.refresh_desired()
    beat = heartbeat(
        "c1", 2, report(0, InstanceState.RUNNING, seq=1), report(1, InstanceState.RUNNING, seq=2)
    )
    service.actual.observe_heartbeat(beat, clock.now)
    clock.now += 3
    service.actual.observe_heartbeat(beat, clock.now)
    assert (await service.converge_once()) is not None
    assert port.requests == []  # everything runs

    await _crash(service, 1, seq=3, crash_count=1)
    clock.now += 0.5
    await service.converge_once()
    (request,) = port.requests
    (start,) = request["starts"]
    assert (start["index"], start["reason"], start["crash_count"]) == (1, "CRASHED", 1)
    assert [stop["reason"] for stop in request["stops"]] == ["CRASHED"]
    (crash,) = request["crashes"]
    assert (crash["exit_status"], crash["detail"]) == (1, "exited with status 1")
    assert service.counters.detection_latencies == [0.5]

    # Asked, and not yet seen done: not asked again, and the crash is not reported twice.
    await service.converge_once()
    assert len(port.requests) == 1 or not port.requests[-1]["starts"]
    assert all(not later["crashes"] for later in port.requests[1:])


async def test_a_failed_ask_is_asked_again() -> None:
    port, clock = FakePort(instances=1), Clock()
    service = await _service(port, clock)
    await service.refresh_desired()
    service.actual.observe_heartbeat(heartbeat("c1", 1), clock.now)
    clock.now += 3
    port.failing_acts = 1
    await service.converge_once()
    await service.converge_once()
    assert [len(request["starts"]) for request in port.requests] == [1, 1]
    assert service.counters.act_failures == 1
    assert service.counters.starts_by_reason["MISSING"] == 1


async def test_no_desired_state_means_no_action() -> None:
    port, clock = FakePort(), Clock()
    port.available = False
    service = await _service(port, clock)
    assert not await service.refresh_desired()
    service.actual.observe_heartbeat(heartbeat("c1", 1), clock.now)
    clock.now += 3
    plan = await service.converge_once()
    assert plan is not None and plan.freshness.value == "UNAVAILABLE"
    assert port.requests == []


async def test_instances_of_a_silent_cell_are_replaced() -> None:
    port, clock = FakePort(instances=1), Clock()
    service = await _service(port, clock)
    await service.refresh_desired()
    service.actual.observe_heartbeat(
        heartbeat("c1", 1, report(0, InstanceState.RUNNING, seq=1)), clock.now
    )
    service.actual.observe_heartbeat(heartbeat("c2", 1), clock.now)
    clock.now += 2.5
    service.actual.observe_heartbeat(heartbeat("c2", 2), clock.now)
    await service.converge_once()
    assert port.requests == []  # c1 missed two heartbeats: not lost yet
    clock.now += 1.0
    service.actual.observe_heartbeat(heartbeat("c2", 3), clock.now)
    await service.refresh_desired()
    await service.converge_once()
    (request,) = port.requests
    assert [(s["index"], s["reason"]) for s in request["starts"]] == [(0, "LOST_WITH_CELL")]
    assert request["stops"] == []  # nothing is stopped on a cell that cannot be reached


async def test_a_cell_back_from_lost_loses_its_duplicates_not_their_replacements() -> None:
    port, clock = FakePort(instances=1), Clock()
    service = await _service(port, clock)
    await service.refresh_desired()
    old = report(0, InstanceState.RUNNING, seq=1)
    service.actual.observe_heartbeat(heartbeat("c1", 1, old), clock.now)
    service.actual.observe_heartbeat(heartbeat("c2", 1), clock.now)
    clock.now += 3.5  # c1 falls silent (paused): three heartbeats missed
    service.actual.observe_heartbeat(heartbeat("c2", 2), clock.now)
    await service.converge_once()
    assert [s["reason"] for s in port.requests[-1]["starts"]] == ["LOST_WITH_CELL"]
    # The replacement runs on c2; it is younger than the instance c1 still holds.
    replacement = report(0, InstanceState.RUNNING, seq=3).model_copy(
        update={"instance_guid": "i-0-new", "since": 1003.0}
    )
    service.actual.observe_heartbeat(heartbeat("c2", 3, replacement), clock.now)
    clock.now += 0.5
    service.actual.observe_heartbeat(heartbeat("c1", 2, old), clock.now)  # c1 resumes
    await service.refresh_desired()
    await service.converge_once()
    (stop,) = port.requests[-1]["stops"]
    assert (stop["instance_guid"], stop["reason"]) == ("i-0", "DUPLICATE")


async def _delivered() -> None:
    for _ in range(5):  # the memory bus hands messages over in tasks of its own
        await asyncio.sleep(0)


async def _lost_verdicts(service: HealthService) -> list[dict[str, Any]]:
    heard: list[dict[str, Any]] = []

    async def on_lost(message: Message) -> None:
        heard.append(message.data)

    await service.bus.subscribe("cell.lost", on_lost)
    return heard


async def test_a_lost_cell_is_announced_to_the_routers_once() -> None:
    port, clock = FakePort(instances=1), Clock()
    service = await _service(port, clock)
    verdicts = await _lost_verdicts(service)
    await service.refresh_desired()
    service.actual.observe_heartbeat(
        heartbeat("c1", 1, report(0, InstanceState.RUNNING, seq=1)), clock.now
    )
    service.actual.observe_heartbeat(heartbeat("c2", 1), clock.now)
    clock.now += 3.5
    service.actual.observe_heartbeat(heartbeat("c2", 2), clock.now)
    await service.converge_once()
    clock.now += 0.5
    service.actual.observe_heartbeat(heartbeat("c2", 3), clock.now)
    await service.converge_once()  # still lost: not announced again
    await _delivered()
    assert [(v["cell_id"], v["last_heard"]) for v in verdicts] == [("c1", 1000.0)]


async def test_every_cell_silent_at_once_is_not_announced() -> None:
    port, clock = FakePort(instances=1), Clock()
    service = await _service(port, clock)
    verdicts = await _lost_verdicts(service)
    await service.refresh_desired()
    service.actual.observe_heartbeat(
        heartbeat("c1", 1, report(0, InstanceState.RUNNING, seq=1)), clock.now
    )
    service.actual.observe_heartbeat(heartbeat("c2", 1), clock.now)
    clock.now += 3.5  # both silent: more likely our own link than both cells
    await service.converge_once()
    await _delivered()
    assert verdicts == []


async def test_a_refused_stop_is_asked_again_at_the_next_run() -> None:
    port, clock = FakePort(instances=1), Clock()
    service = await _service(port, clock)
    extra = report(1, InstanceState.RUNNING, seq=2)
    service.actual.observe_heartbeat(
        heartbeat("c1", 2, report(0, InstanceState.RUNNING, seq=1), extra), clock.now
    )
    await service.refresh_desired()  # after index 1 was heard: it may be judged
    clock.now += 3
    port.refusing_stops = True
    await service.converge_once()
    port.refusing_stops = False
    await service.converge_once()
    assert [[s["reason"] for s in r["stops"]] for r in port.requests] == [
        ["EXTRA_INDEX"],
        ["EXTRA_INDEX"],
    ]
    assert service.counters.stops_by_reason["EXTRA_INDEX"] == 1
    assert sum(service.counters.refused.values()) == 1


async def test_an_instance_heard_after_the_snapshot_was_asked_for_waits_for_the_next() -> None:
    port, clock = FakePort(instances=1), Clock()
    service = await _service(port, clock)
    await service.refresh_desired()  # read before index 1 was started (a scale-up, say)
    service.actual.observe_heartbeat(
        heartbeat(
            "c1",
            2,
            report(0, InstanceState.RUNNING, seq=1),
            report(1, InstanceState.RUNNING, seq=2),
        ),
        clock.now,
    )
    clock.now += 3
    await service.converge_once()
    assert port.requests == []  # the snapshot may simply predate index 1
    await service.refresh_desired()
    await service.converge_once()
    assert [s["reason"] for s in port.requests[-1]["stops"]] == ["EXTRA_INDEX"]


async def test_a_lost_cell_heard_again_is_announced_back_once_settled() -> None:
    port, clock = FakePort(instances=1), Clock()
    service = await _service(port, clock)
    verdicts = await _lost_verdicts(service)
    await service.refresh_desired()
    kept = report(0, InstanceState.RUNNING, seq=1)
    service.actual.observe_heartbeat(heartbeat("c1", 1, kept), clock.now)
    service.actual.observe_heartbeat(heartbeat("c2", 1), clock.now)
    clock.now += 3.5  # c1 silent: lost, and its index asked of c2, which has no room
    port.refusing_starts = True
    service.actual.observe_heartbeat(heartbeat("c2", 2), clock.now)
    await service.converge_once()
    clock.now += 0.5
    service.actual.observe_heartbeat(heartbeat("c1", 2, kept), clock.now)  # c1 is back
    service.actual.observe_heartbeat(heartbeat("c2", 3), clock.now)
    await service.refresh_desired()
    await service.converge_once()
    await service.converge_once()
    await _delivered()
    assert [(v["cell_id"], v["back"]) for v in verdicts] == [("c1", False), ("c1", True)]
