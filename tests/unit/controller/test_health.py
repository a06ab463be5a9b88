"""The controller's checks of what the health manager asks: which starts desired state wants,
which instances may be stopped, what a request may hold, and what the scheduler counts as
present when a cell is lost."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from overcast.bus.messages import InstanceReport
from overcast.controller.cells import CellDirectory
from overcast.controller.health import (
    MAX_ITEMS,
    MAX_STATUS_KEYS,
    HealthActions,
    keeps_crashed_index,
    still_needed,
)
from overcast.controller.scheduler import (
    INDEX_OUT_OF_RANGE,
    NOT_DESIRED,
    STALE_VERSION,
    Scheduler,
    desired_instances,
    start_refusal,
)
from overcast.models.instances import InstanceState
from overcast.models.lifecycle import AppState
from overcast.models.resources import App, Process
from tests.unit.controller.test_cells import FakeTime, heartbeat

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def app(state: AppState = AppState.STARTED, droplet: str | None = "d-1") -> App:
    return App(
        guid="a-1",
        name="web",
        space_guid="s-1",
        created_at=NOW,
        updated_at=NOW,
        state=state,
        current_droplet_guid=droplet,
    )


def process(instances: int = 2, version: str = "v1") -> Process:
    return Process(
        guid="p-1",
        app_guid="a-1",
        type="web",
        created_at=NOW,
        updated_at=NOW,
        version=version,
        instances=instances,
    )


def report(
    guid: str = "i-1",
    *,
    index: int = 0,
    version: str = "v1",
    state: InstanceState = InstanceState.RUNNING,
    since: float = 1.0,
) -> InstanceReport:
    return InstanceReport(
        instance_guid=guid,
        process_guid="p",
        process_type="web",
        app_guid="a",
        index=index,
        version=version,
        state=state,
        since=since,
        host="127.0.0.1",
        memory_mb=256,
        disk_mb=1024,
    )


# --- starts ------------------------------------------------------------------------------------


def test_only_a_started_app_with_a_droplet_wants_instances() -> None:
    assert desired_instances(app(), process(3)) == 3
    assert desired_instances(app(AppState.STOPPED), process(3)) == 0
    assert desired_instances(app(droplet=None), process(3)) == 0


@pytest.mark.parametrize(
    ("loaded", "index", "version", "refusal"),
    [
        (None, 0, None, NOT_DESIRED),
        ((app(AppState.STOPPED), process()), 0, None, NOT_DESIRED),
        ((app(droplet=None), process()), 0, None, NOT_DESIRED),
        ((app(), process(0)), 0, None, NOT_DESIRED),
        ((app(), process(2)), 2, None, INDEX_OUT_OF_RANGE),
        ((app(), process(2)), -1, None, INDEX_OUT_OF_RANGE),
        ((app(), process(2, "v2")), 1, "v1", STALE_VERSION),
        ((app(), process(2)), 1, None, None),
        ((app(), process(2)), 1, "v1", None),
    ],
)
def test_start_refusal(
    loaded: tuple[App, Process] | None, index: int, version: str | None, refusal: str | None
) -> None:
    assert start_refusal(loaded, index, version=version) == refusal


# --- stops -------------------------------------------------------------------------------------


def test_the_only_live_holder_of_a_wanted_index_is_needed() -> None:
    assert still_needed(report(), wanted=1, version="v1", other_holders=0)
    for state in (InstanceState.CLAIMED, InstanceState.STARTING):
        assert still_needed(report(state=state), wanted=1, version="v1", other_holders=0)


@pytest.mark.parametrize(
    ("instance", "wanted", "version", "others"),
    [
        (report(), 1, "v1", 1),  # a duplicate: another live instance holds the index
        (report(index=1), 1, "v1", 0),  # out of range (scaled down)
        (report(), 0, "v1", 0),  # the app is stopped, or the process is gone
        (report(version="v0"), 1, "v1", 0),  # another version
        (report(state=InstanceState.CRASHED), 1, "v1", 0),  # a crash record
        (report(state=InstanceState.EVACUATING), 1, "v1", 0),
        (report(state=InstanceState.STOPPING), 1, "v1", 0),
    ],
)
def test_what_may_be_stopped(
    instance: InstanceReport, wanted: int, version: str, others: int
) -> None:
    assert not still_needed(instance, wanted=wanted, version=version, other_holders=others)


def test_the_only_crash_record_of_a_wanted_index_keeps_it() -> None:
    crashed = report(state=InstanceState.CRASHED)
    assert keeps_crashed_index(crashed, wanted=1, version="v1", other_holders=0)


@pytest.mark.parametrize(
    ("instance", "wanted", "version", "others"),
    [
        (report(state=InstanceState.CRASHED), 1, "v1", 1),  # held by another (live or crashed)
        (report(state=InstanceState.CRASHED, index=1), 1, "v1", 0),  # out of range
        (report(state=InstanceState.CRASHED), 0, "v1", 0),  # the app is stopped
        (report(state=InstanceState.CRASHED, version="v0"), 1, "v1", 0),  # another version
        (report(), 1, "v1", 0),  # live: still_needed's case
    ],
)
def test_crash_records_that_keep_nothing(
    instance: InstanceReport, wanted: int, version: str, others: int
) -> None:
    assert not keeps_crashed_index(instance, wanted=wanted, version=version, other_holders=others)


# --- request validation ------------------------------------------------------------------------


def _start(**changes: Any) -> dict[str, Any]:
    return {"process_guid": "p-1", "index": 0, "reason": "CRASHED", **changes}


def _waiting(**changes: Any) -> dict[str, Any]:
    return {
        "process_guid": "p-1",
        "index": 0,
        "instance_guid": "i-1",
        "crash_count": 4,
        "restart_at": 1_700_000_000.5,
        **changes,
    }


def test_a_full_request_parses() -> None:
    body = {
        "starts": [_start(crash_count=3, replaces="i-1", version="v1")],
        "stops": [
            {"instance_guid": "i-1", "cell_id": "c-1", "process_guid": "p-1", "reason": "CRASHED"}
        ],
        "crashes": [
            {
                "instance_guid": "i-1",
                "process_guid": "p-1",
                "app_guid": "a-1",
                "index": 0,
                "cell_id": "c-1",
                "reason": "CRASHED",
                "detail": "exited with status 1",
                "exit_status": 1,
                "crash_count": 3,
                "crashed_at": 1_700_000_000,
            }
        ],
        "waiting": [_waiting()],
        "status": {"instances": 12, "lag_seconds": 0.25, "desired": "FRESH"},
    }
    parsed = HealthActions.model_validate(body)
    assert parsed.starts[0].crash_count == 3 and parsed.crashes[0].crashed_at == 1_700_000_000.0
    assert HealthActions.model_validate({}).starts == []  # every list may be left out
    defaults = HealthActions.model_validate({"starts": [_start()]}).starts[0]
    assert defaults.crash_count == 0 and defaults.replaces is None and defaults.version is None


@pytest.mark.parametrize(
    "body",
    [
        {"starts": [_start(colour="red")]},  # unknown field
        {"restarts": []},
        {"starts": [_start(index=-1)]},
        {"starts": [_start(index="0")]},  # strict: no strings for numbers
        {"starts": [_start(index=1.5)]},
        {"starts": [_start(crash_count=-1)]},
        {"starts": [_start(reason="")]},
        {"starts": [{"process_guid": "p-1", "index": 0}]},  # no reason
        {"starts": [_start(process_guid="x" * 129)]},
        {"starts": [_start()] * (MAX_ITEMS + 1)},
        {"waiting": [_waiting(restart_at=float("nan"))]},
        {"waiting": [_waiting(restart_at=float("inf"))]},
        {"status": {"up": True}},  # numbers and strings only
        {"status": {"lag": float("nan")}},
        {"status": {"nested": {"a": 1}}},
        {"status": {f"k{n}": n for n in range(MAX_STATUS_KEYS + 1)}},
        {"starts": {"process_guid": "p-1"}},
    ],
)
def test_bad_requests_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HealthActions.model_validate(body)


# --- scheduling around lost cells --------------------------------------------------------------


def test_instances_on_lost_cells_are_not_counted_as_present() -> None:
    clock = FakeTime()
    directory = CellDirectory(bus=None, requester="test", monotonic=clock)  # type: ignore[arg-type]
    directory.observe_heartbeat(heartbeat(1, report("old", since=1.0)))  # cell c1, 1 s beats
    directory.observe_heartbeat(
        heartbeat(1, report("new", since=5.0), cell_id="c2", interval_seconds=60.0)
    )
    scheduler = Scheduler(None, None, None, directory, None, None)  # type: ignore[arg-type]
    guids = [placed.report.instance_guid for placed in scheduler.reachable_instances("p")]
    assert guids == ["old", "new"]
    clock.now += 3.5  # c1 missed three heartbeats: lost
    assert [placed.report.instance_guid for placed in scheduler.reachable_instances("p")] == ["new"]
    assert scheduler.on_lost_cell("c1") and not scheduler.on_lost_cell("c2")
