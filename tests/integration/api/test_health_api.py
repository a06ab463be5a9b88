"""/v3/x/health: the controller's side of the health manager, over HTTP.

Most tests use fake cells: heartbeats fed straight into the controller's cell directory, and
answers to the cell RPCs on its bus, so each test sets exactly the actual state it needs. The
last one restarts a crashed instance on a real cell."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from overcast.bus.base import Message
from overcast.bus.messages import (
    Heartbeat,
    InstanceReport,
    InstanceSpec,
    InstanceStatsRequest,
    Resources,
    RpcReply,
    StartInstance,
    StatsReply,
    StopInstance,
    parse_command,
)
from overcast.bus.subjects import cell_rpc
from overcast.models.instances import CellState, InstanceState
from overcast.models.lifecycle import AppState
from overcast.testing.platform import Platform, eventually, memory_buses, start_platform
from tests.integration.api.conftest import Api

ACTIONS = "/v3/x/health/actions"


@dataclass
class FakeCell:
    """A cell that is only heartbeats and RPC answers: it takes every start (the instance is
    RUNNING at once) and every stop, and keeps the commands it was sent."""

    api: Api
    cell_id: str
    interval_seconds: float = 60.0
    instances: dict[str, InstanceReport] = field(default_factory=dict)
    commands: list[Any] = field(default_factory=list)
    seq: int = 0

    async def attach(self) -> FakeCell:
        await self.api.parts.bus.subscribe(cell_rpc(self.cell_id), self._answer)
        self.beat()
        return self

    def put(self, report: InstanceReport) -> InstanceReport:
        self.seq += 1
        stamped = report.model_copy(update={"seq": self.seq})
        self.instances[report.instance_guid] = stamped
        self.beat()
        return stamped

    def beat(self) -> None:
        self.seq += 1
        heartbeat = Heartbeat(
            cell_id=self.cell_id,
            zone="z1",
            state=CellState.ENABLED,
            host="127.0.0.1",
            stacks=["overcast-linux"],
            capacity=Resources(memory_mb=65536, disk_mb=65536, containers=100),
            allocated=Resources(memory_mb=0, disk_mb=0, containers=0),
            instances=list(self.instances.values()),
            seq=self.seq,
            interval_seconds=self.interval_seconds,
            sent_at=time.time(),
            started_at=1.0,
        )
        self.api.parts.controller.directory.observe_heartbeat(heartbeat)

    def starts(self) -> list[InstanceSpec]:
        return [c.instance for c in self.commands if isinstance(c, StartInstance)]

    def stops(self) -> list[str]:
        return [c.instance_guid for c in self.commands if isinstance(c, StopInstance)]

    async def _answer(self, message: Message) -> None:
        command = parse_command(message.data)
        self.commands.append(command)
        bus = self.api.parts.bus
        if isinstance(command, InstanceStatsRequest):
            await bus.respond(message, StatsReply(cell_id=self.cell_id, instances=[]).wire())
            return
        instance = None
        if isinstance(command, StartInstance):
            instance = self.put(_running(command.instance))
        elif isinstance(command, StopInstance):
            self.instances.pop(command.instance_guid, None)
            self.beat()
        reply = RpcReply(accepted=True, cell_id=self.cell_id, seq=self.seq, instance=instance)
        await bus.respond(message, reply.wire())


def _running(spec: InstanceSpec) -> InstanceReport:
    return InstanceReport(
        instance_guid=spec.instance_guid,
        process_guid=spec.process_guid,
        process_type=spec.process_type,
        app_guid=spec.app_guid,
        index=spec.index,
        version=spec.version,
        state=InstanceState.RUNNING,
        since=time.time(),
        host="127.0.0.1",
        port=61001,
        memory_mb=spec.memory_mb,
        disk_mb=spec.disk_mb,
        crash_count=spec.crash_count,
    )


def _crashed(running: InstanceReport, crash_count: int = 1) -> InstanceReport:
    return running.model_copy(
        update={
            "state": InstanceState.CRASHED,
            "port": None,
            "reason": "CRASHED",
            "detail": "exited with status 1",
            "exit_status": 1,
            "crash_count": crash_count,
        }
    )


@dataclass
class StartedApp:
    app: dict[str, Any]
    process_guid: str
    version: str


async def _cell(api: Api, cell_id: str = "fake-1", **changes: Any) -> FakeCell:
    directory = api.parts.controller.directory

    async def warm() -> bool:
        return directory.warm

    # A scheduling run waits until the cells have had time to answer (and with the fake
    # clock it would wait for ever), and so do the health manager's starts.
    await eventually(warm, within=5)
    return await FakeCell(api, cell_id, **changes).attach()


async def _app(
    api: Api, name: str = "web", *, start: bool = True, instances: int = 1
) -> StartedApp:
    """An app with a droplet (in the one space of the test), started unless told not to,
    once its scheduling runs are over."""
    spaces = (await api.http.get("/v3/spaces", headers=api.admin)).json()["resources"]
    space_guid = (
        spaces[0]["guid"] if spaces else (await api.space((await api.org())["guid"]))["guid"]
    )
    app = await api.app(space_guid, name)
    await api.droplet(app["guid"])
    process = (
        await api.http.get(f"/v3/apps/{app['guid']}/processes/web", headers=api.admin)
    ).json()
    if instances != 1:
        scaled = await api.http.post(
            f"/v3/processes/{process['guid']}/actions/scale",
            headers=api.admin,
            json={"instances": instances},
        )
        assert scaled.status_code == 202, scaled.text
    if start:
        started = await api.http.post(f"/v3/apps/{app['guid']}/actions/start", headers=api.admin)
        assert started.status_code == 200, started.text
    await _settled(api, process["guid"])
    return StartedApp(app, process["guid"], await _version(api, process["guid"]))


async def _version(api: Api, process_guid: str) -> str:
    async with api.parts.store.read() as tx:
        process = await tx.processes.require(process_guid)
    return process.version


async def _settled(api: Api, process_guid: str) -> None:
    """Every scheduling run of the process has finished."""

    async def done() -> bool:
        response = await api.http.get(f"/v3/x/jobs?target_guids={process_guid}", headers=api.admin)
        jobs = response.json()["resources"]
        return all(job["state"] in ("COMPLETE", "FAILED") for job in jobs)

    await eventually(done, within=15, interval=0.05)


async def _act(api: Api, body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    response = await api.http.post(ACTIONS, headers=api.admin, json=body)
    assert response.status_code == expect, response.text
    return dict(response.json())


def _start(process_guid: str, index: int = 0, **changes: Any) -> dict[str, Any]:
    return {"process_guid": process_guid, "index": index, "reason": "MISSING", **changes}


def _stop(report: InstanceReport, cell_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "instance_guid": report.instance_guid,
        "cell_id": cell_id,
        "process_guid": report.process_guid,
        "reason": "DUPLICATE",
        **changes,
    }


def _only_instance(cell: FakeCell) -> InstanceReport:
    (report,) = cell.instances.values()
    return report


def _outcomes(results: list[dict[str, Any]]) -> list[tuple[bool, str | None]]:
    return [(result["accepted"], result["reason"]) for result in results]


# --- desired state -----------------------------------------------------------------------------


async def test_desired_lists_every_process_with_what_should_run(api: Api) -> None:
    await _cell(api)
    running = await _app(api, "running")
    stopped = await _app(api, "stopped", start=False, instances=3)
    response = await api.http.get("/v3/x/health/desired", headers=api.admin)
    assert response.status_code == 200
    body = response.json()
    assert body["generated_at"] == api.clock.now().timestamp()
    by_guid = {entry["process_guid"]: entry for entry in body["processes"]}
    assert by_guid[running.process_guid] == {
        "process_guid": running.process_guid,
        "app_guid": running.app["guid"],
        "version": running.version,
        "instances": 1,
    }
    assert by_guid[stopped.process_guid]["instances"] == 0  # wants 3 once started
    assert len(by_guid) == 2


# --- starts ------------------------------------------------------------------------------------


async def test_starts_are_checked_against_desired_state(api: Api) -> None:
    cell = await _cell(api)
    started = await _app(api)
    stopped = await _app(api, "idle", start=False)
    pg = started.process_guid
    before = len(cell.starts())
    results = await _act(
        api,
        {
            "starts": [
                _start("no-such-process"),
                _start(stopped.process_guid),
                _start(pg, index=1),
                _start(pg, index=0),
                _start(pg, index=0, version="an-older-version"),
            ]
        },
    )
    assert _outcomes(results["starts"]) == [
        (False, "not desired"),
        (False, "not desired"),
        (False, "index out of range"),
        (False, "already running"),
        (False, "stale version"),
    ]
    assert results["stops"] == []
    assert len(cell.starts()) == before  # no cell heard of any of them

    # The instance crashes: its index is started again, with the crash count carried over,
    # and the crash record is stopped.
    record = cell.put(_crashed(_only_instance(cell), crash_count=2))
    results = await _act(
        api,
        {
            "starts": [_start(pg, reason="CRASHED", crash_count=2, replaces=record.instance_guid)],
            "stops": [_stop(record, cell.cell_id, reason="CRASHED")],
        },
    )
    assert results["starts"] == [
        {"process_guid": pg, "index": 0, "accepted": True, "reason": None, "detail": None}
    ]
    assert results["stops"] == [
        {"instance_guid": record.instance_guid, "accepted": True, "reason": None}
    ]
    replacement = cell.starts()[-1]
    assert (replacement.index, replacement.crash_count) == (0, 2)
    assert replacement.version == started.version
    assert cell.stops() == [record.instance_guid]
    # Asked again (a lost answer, a retry): the replacement holds the index now.
    again = await _act(api, {"starts": [_start(pg, reason="CRASHED", crash_count=2)]})
    assert _outcomes(again["starts"]) == [(False, "already running")]


# --- stops -------------------------------------------------------------------------------------


async def test_stops_never_take_the_last_instance_of_a_wanted_index(api: Api) -> None:
    first = await _cell(api, "fake-1")
    await _app(api)
    kept = _only_instance(first)
    second = await _cell(api, "fake-2")
    twin = second.put(kept.model_copy(update={"instance_guid": "twin-guid"}))
    results = await _act(
        api,
        {
            "stops": [
                _stop(kept, first.cell_id, instance_guid="no-such-instance"),
                _stop(kept, second.cell_id),  # not where the directory has it
                _stop(kept, first.cell_id, process_guid="another-process"),
                _stop(twin, second.cell_id),
                _stop(kept, first.cell_id),  # the twin is going: this one is the last
            ]
        },
    )
    assert _outcomes(results["stops"]) == [
        (False, "unknown instance"),
        (False, "not that cell's or process's instance"),
        (False, "not that cell's or process's instance"),
        (True, None),
        (False, "still needed"),
    ]
    assert second.stops() == ["twin-guid"] and first.stops() == []


async def test_a_crash_record_stays_until_its_replacement_is_started(api: Api) -> None:
    cell = await _cell(api)
    started = await _app(api)
    pg = started.process_guid
    record = cell.put(_crashed(_only_instance(cell), crash_count=2))
    # Its replacement is refused (here: computed from an older version; after a controller
    # restart: the cells not heard from yet): the record keeps the index and its crash count,
    # or the next start would count from 0 and a scheduling run would start the index at once.
    refused = await _act(
        api,
        {
            "starts": [
                _start(pg, reason="CRASHED", crash_count=2, version="an-older-version"),
            ],
            "stops": [_stop(record, cell.cell_id, reason="CRASHED")],
        },
    )
    assert _outcomes(refused["starts"]) == [(False, "stale version")]
    assert _outcomes(refused["stops"]) == [(False, "replacement not started")]
    assert cell.stops() == []
    # Of two crash records at the index, one may go: the other keeps it.
    older = cell.put(record.model_copy(update={"instance_guid": "older-record", "crash_count": 1}))
    duplicate = await _act(api, {"stops": [_stop(older, cell.cell_id, reason="DUPLICATE")]})
    assert _outcomes(duplicate["stops"]) == [(True, None)]
    # Started, its replacement holds the index: the record goes with it.
    replaced = await _act(
        api,
        {
            "starts": [_start(pg, reason="CRASHED", crash_count=2, replaces=record.instance_guid)],
            "stops": [_stop(record, cell.cell_id, reason="CRASHED")],
        },
    )
    assert _outcomes(replaced["starts"]) == [(True, None)]
    assert _outcomes(replaced["stops"]) == [(True, None)]
    assert cell.stops() == ["older-record", record.instance_guid]
    assert cell.starts()[-1].crash_count == 2


async def test_instances_of_a_stopped_app_may_be_stopped(api: Api) -> None:
    cell = await _cell(api)
    started = await _app(api)
    running = _only_instance(cell)
    # Stopped in the store, so that no scheduling run stops the instance first.
    async with api.parts.store.write() as tx:
        await tx.apps.update(
            started.app["guid"], lambda app: dataclasses.replace(app, state=AppState.STOPPED)
        )
    results = await _act(api, {"stops": [_stop(running, cell.cell_id, reason="APP_STOPPED")]})
    assert _outcomes(results["stops"]) == [(True, None)]
    assert cell.stops() == [running.instance_guid]


# --- crashes -----------------------------------------------------------------------------------


def _crash(started: StartedApp, **changes: Any) -> dict[str, Any]:
    return {
        "instance_guid": "crashed-guid",
        "process_guid": started.process_guid,
        "app_guid": started.app["guid"],
        "index": 0,
        "cell_id": "fake-1",
        "reason": "CRASHED",
        "detail": "exited with status 3",
        "exit_status": 3,
        "crash_count": 2,
        "crashed_at": 1_767_225_600.25,
        **changes,
    }


async def _crash_events(api: Api, app_guid: str) -> list[dict[str, Any]]:
    response = await api.http.get(
        f"/v3/audit_events?types=audit.app.process.crash&target_guids={app_guid}",
        headers=api.admin,
    )
    assert response.status_code == 200
    return list(response.json()["resources"])


async def test_each_crash_is_recorded_once(api: Api) -> None:
    await _cell(api)
    started = await _app(api)
    crash = _crash(started)
    await _act(api, {"crashes": [crash, crash]})
    stranger = _crash(started, instance_guid="other-guid", app_guid="someone-elses-app")
    await _act(api, {"crashes": [crash, stranger]})
    (event,) = await _crash_events(api, started.app["guid"])
    assert event["actor"] == {"guid": started.process_guid, "type": "process", "name": "web"}
    assert event["target"]["guid"] == started.app["guid"]
    assert event["data"] == {
        "process_guid": started.process_guid,
        "process_type": "web",
        "instance": "crashed-guid",
        "index": 0,
        "cell_id": "fake-1",
        "exit_status": 3,
        "exit_description": "exited with status 3",
        "reason": "CRASHED",
        "crash_count": 2,
        "crash_timestamp": 1_767_225_600_250_000_000,
    }
    # The next crash of the same instance is a new event.
    await _act(api, {"crashes": [_crash(started, crash_count=3)]})
    assert len(await _crash_events(api, started.app["guid"])) == 2
    status = (await api.http.get("/v3/x/health", headers=api.admin)).json()
    assert status["counters"]["crashes"] == {"recorded": 2, "repeated": 2, "ignored": 1}


# --- stats -------------------------------------------------------------------------------------


async def test_stats_of_a_crashed_instance_say_when_it_restarts(api: Api) -> None:
    cell = await _cell(api)
    started = await _app(api, instances=2)
    by_index = {report.index: report for report in cell.instances.values()}
    record = cell.put(_crashed(by_index[1], crash_count=4))
    path = f"/v3/processes/{started.process_guid}/stats"

    stats = (await api.http.get(path, headers=api.admin)).json()["resources"]
    assert [entry["state"] for entry in stats] == ["RUNNING", "CRASHED"]
    assert "crash_count" not in stats[0]
    assert stats[1]["details"] == "exited with status 1"
    assert (stats[1]["crash_count"], stats[1]["crash_reason"]) == (4, "CRASHED")
    assert stats[1]["next_restart_at"] is None  # nobody said it waits

    restart_at = api.clock.now().timestamp() + 120
    waiting = {
        "process_guid": started.process_guid,
        "index": 1,
        "instance_guid": record.instance_guid,
        "crash_count": 4,
        "restart_at": restart_at,
    }
    await _act(api, {"waiting": [waiting]})
    stats = (await api.http.get(path, headers=api.admin)).json()["resources"]
    expected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(restart_at))
    assert stats[1]["next_restart_at"] == expected
    # A waiting list without it: it is not waiting any more.
    await _act(api, {"waiting": []})
    stats = (await api.http.get(path, headers=api.admin)).json()["resources"]
    assert stats[1]["next_restart_at"] is None


# --- status ------------------------------------------------------------------------------------


async def test_status_says_what_the_health_service_reported_and_what_was_done(api: Api) -> None:
    status = (await api.http.get("/v3/x/health", headers=api.admin)).json()
    assert status["state"] == "unknown" and status["reported_at"] is None
    cell = await _cell(api)
    started = await _app(api)
    waiting = {
        "process_guid": started.process_guid,
        "index": 0,
        "instance_guid": "i-1",
        "crash_count": 5,
        "restart_at": 1_767_225_660,
    }
    await _act(
        api,
        {
            "starts": [_start(started.process_guid), _start("gone")],
            "stops": [_stop(_only_instance(cell), cell.cell_id)],
            "waiting": [waiting],
            "status": {"desired": "FRESH", "instances": 1, "lag_seconds": 0.5},
        },
    )
    status = (await api.http.get("/v3/x/health", headers=api.admin)).json()
    assert status["state"] == "ok"
    assert status["reported_at"] == api.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    assert status["status"] == {"desired": "FRESH", "instances": 1, "lag_seconds": 0.5}
    assert status["counters"]["starts"] == {
        "accepted": {},
        "refused": {"already running": 1, "not desired": 1},
    }
    assert status["counters"]["stops"] == {"accepted": {}, "refused": {"still needed": 1}}
    assert status["waiting"] == [
        {
            "process_guid": started.process_guid,
            "index": 0,
            "crash_count": 5,
            "restart_at": "2026-01-01T00:01:00Z",
        }
    ]
    api.clock.advance(16)  # three reports missed
    assert (await api.http.get("/v3/x/health", headers=api.admin)).json()["state"] == "unknown"


# --- bad input, permissions -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"starts": [{"process_guid": "p", "index": 0, "reason": "MISSING", "colour": "red"}]},
        {"restarts": []},
        {"starts": [{"process_guid": "p", "index": "0", "reason": "MISSING"}]},
        {"starts": [{"process_guid": "p", "index": -1, "reason": "MISSING"}]},
        {"stops": [{"instance_guid": "i"}]},
        {"status": {"up": True}},
        {"starts": [{"process_guid": "p", "index": 0, "reason": "MISSING"}] * 10_001},
        ["starts"],
    ],
)
async def test_bad_bodies_are_unprocessable(api: Api, body: Any) -> None:
    response = await api.http.post(ACTIONS, headers=api.admin, json=body)
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["title"] == "CF-UnprocessableEntity"


async def test_unparseable_bodies_and_queries_are_bad_requests(api: Api) -> None:
    headers = {**api.admin, "Content-Type": "application/json"}
    response = await api.http.post(ACTIONS, headers=headers, content=b'{"starts": [')
    assert response.status_code == 400
    assert response.json()["errors"][0]["title"] == "CF-MessageParseError"
    response = await api.http.get("/v3/x/health/desired?page=2", headers=api.admin)
    assert response.status_code == 400


async def test_health_is_for_admins_only(api: Api) -> None:
    _, someone = await api.user("someone")
    for method, path in (
        ("GET", "/v3/x/health"),
        ("GET", "/v3/x/health/desired"),
        ("POST", ACTIONS),
    ):
        body: dict[str, Any] | None = {} if method == "POST" else None
        response = await api.http.request(method, path, headers=someone, json=body)
        assert response.status_code == 403, path
        assert response.json()["errors"][0]["title"] == "CF-NotAuthorized"
        assert (await api.http.request(method, path, json=body)).status_code == 401


# --- the scheduler and lost cells ---------------------------------------------------------------


async def test_a_scheduling_run_keeps_the_replacement_of_an_instance_on_a_lost_cell(
    api: Api,
) -> None:
    """An instance on a lost cell and its healthy replacement at the same index: the run
    must not keep the unreachable one (the older) and stop the replacement as a duplicate."""
    lost = await _cell(api, "lost", interval_seconds=0.05)
    healthy = await _cell(api, "healthy")
    stopped = await _app(api, start=False)
    old = _running_report(stopped, "old-guid", since=1.0)
    lost.put(old)
    healthy.put(_running_report(stopped, "new-guid", since=2.0))
    directory = api.parts.controller.directory

    async def is_lost() -> bool:
        record = directory.cell("lost")
        return record is not None and directory.cell_state(record) == CellState.LOST

    await eventually(is_lost, within=5)
    started = await api.http.post(
        f"/v3/apps/{stopped.app['guid']}/actions/start", headers=api.admin
    )
    assert started.status_code == 200
    await _settled(api, stopped.process_guid)
    summary = await api.parts.controller.scheduler.schedule(stopped.process_guid)
    assert summary["started"] == 0 and summary["stopped"] == 0
    assert healthy.stops() == [] and lost.stops() == []
    assert healthy.starts() == [] and lost.starts() == []


def _running_report(started: StartedApp, guid: str, *, since: float) -> InstanceReport:
    return InstanceReport(
        instance_guid=guid,
        process_guid=started.process_guid,
        process_type="web",
        app_guid=started.app["guid"],
        index=0,
        version=started.version,
        state=InstanceState.RUNNING,
        since=since,
        host="127.0.0.1",
        port=61002,
        memory_mb=256,
        disk_mb=1024,
    )


# --- a real cell -------------------------------------------------------------------------------


@pytest.fixture
async def one_cell(tmp_path: Path) -> AsyncIterator[Platform]:
    platform = await start_platform(tmp_path, make_bus=memory_buses())
    try:
        await platform.add_cell("cell-a")
        await platform.wait_for_cells(1)
        yield platform
    finally:
        await platform.close()


async def test_a_crashed_instance_is_restarted_on_request_with_its_crash_count(
    one_cell: Platform,
) -> None:
    platform = one_cell
    space = await platform.space()
    app = await platform.app_with_droplet(space, "crashy")
    guid = app["guid"]
    await platform.scale(guid, 2)
    await platform.post(f"/v3/apps/{guid}/actions/start")
    first = await platform.wait_running(guid, 2)
    victim = platform.kill_instance_at(guid, 1)

    async def crashed() -> dict[str, Any] | None:
        stats = await platform.stats(guid)
        return stats[1] if stats[1]["state"] == "CRASHED" else None

    entry = await eventually(crashed)
    assert (entry["crash_count"], entry["crash_reason"]) == (1, "CRASHED")
    assert entry["next_restart_at"] is None
    process_guid = victim.spec.process_guid
    response = await platform.request(
        "POST",
        ACTIONS,
        json={
            "starts": [
                {
                    "process_guid": process_guid,
                    "index": 1,
                    "reason": "CRASHED",
                    "crash_count": 1,
                    "replaces": victim.guid,
                }
            ],
            "stops": [
                {
                    "instance_guid": victim.guid,
                    "cell_id": "cell-a",
                    "process_guid": process_guid,
                    "reason": "CRASHED",
                }
            ],
            "crashes": [
                {
                    "instance_guid": victim.guid,
                    "process_guid": process_guid,
                    "app_guid": guid,
                    "index": 1,
                    "cell_id": "cell-a",
                    "reason": entry["crash_reason"],
                    "detail": entry["details"],
                    "exit_status": 137,
                    "crash_count": 1,
                    "crashed_at": time.time(),
                }
            ],
        },
    )
    results = response.json()
    assert _outcomes(results["starts"]) == [(True, None)], results
    assert _outcomes(results["stops"]) == [(True, None)], results

    stats = await platform.wait_running(guid, 2)
    assert stats[0]["instance_guid"] == first[0]["instance_guid"]
    assert stats[1]["instance_guid"] not in (first[1]["instance_guid"], victim.guid)
    replacement = next(report for report in platform.instance_reports(guid) if report.index == 1)
    assert replacement.instance_guid == stats[1]["instance_guid"]
    assert replacement.crash_count == 1  # carried over: the next crash counts 2
    events = await platform.get(
        "/v3/audit_events", params={"types": "audit.app.process.crash", "target_guids": guid}
    )
    (event,) = events["resources"]
    assert event["data"]["exit_status"] == 137 and event["data"]["reason"] == "CRASHED"
    assert "killed by signal 9" in event["data"]["exit_description"]
