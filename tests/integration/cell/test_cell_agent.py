"""The cell agent running real processes on the memory bus."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from overcast.bus.messages import (
    CellDiscover,
    HealthCheckSpec,
    InstanceStatsRequest,
    SetCellState,
    StopInstance,
)
from overcast.bus.subjects import (
    CELL_DISCOVER,
    CELL_HEARTBEAT,
    INSTANCE_EVENT,
    app_logs,
    cell_rpc,
)
from overcast.cell import procfs
from overcast.cell.process import ProcessRuntime
from overcast.models.instances import InstanceState
from overcast.testing.cells import eventually, instance_spec
from tests.integration.cell.conftest import Cells, Droplets, cell_settings
from tests.integration.cell.helpers import (
    get_json,
    record_of,
    recorder,
    start,
    start_running,
    stop,
    transitions,
    wait_state,
)


async def test_start_runs_an_instance_and_reports_it(cells: Cells, droplets: Droplets) -> None:
    seen = await recorder(cells)
    agent = await cells.start()
    spec = instance_spec(droplets.hello, droplets.url(droplets.hello))
    reply = await start(cells, agent, spec)
    assert reply["accepted"] and reply["cell_id"] == agent.cell_id
    assert reply["instance"]["state"] == "CLAIMED"

    record = await wait_state(agent, spec.instance_guid, InstanceState.RUNNING)
    assert record.port is not None and record.pid is not None
    body = await get_json(record.port)
    assert body["index"] == "0" and body["guid"] == spec.instance_guid

    expected = [("UNCLAIMED", "CLAIMED"), ("CLAIMED", "STARTING"), ("STARTING", "RUNNING")]
    await eventually(
        lambda: transitions(seen.of(INSTANCE_EVENT), spec.instance_guid) == expected,
        what="three events",
    )
    events = seen.of(INSTANCE_EVENT)
    seqs = [event["instance"]["seq"] for event in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3

    def running_heartbeat() -> dict[str, object] | None:
        for beat in reversed(seen.of(CELL_HEARTBEAT)):
            states = [i["state"] for i in beat["instances"]]  # type: ignore[index]
            if states == ["RUNNING"]:
                return beat
        return None

    beat = await eventually(running_heartbeat, what="a heartbeat with the instance")
    assert beat["allocated"] == {"memory_mb": 64, "disk_mb": 64, "containers": 1}
    assert beat["capacity"]["memory_mb"] == 4096
    assert beat["seq"] >= events[-1]["instance"]["seq"]

    # Its stdout, and the cell's own lines, on logs.<app>.
    def app_lines() -> list[dict[str, object]]:
        return [
            line
            for line in seen.of(app_logs(spec.app_guid))
            if line["source"] == "APP/PROC/WEB/0" and "listening" in str(line["line"])
        ]

    def cell_lines() -> list[str]:
        logged = seen.of(app_logs(spec.app_guid))
        return [str(line["line"]) for line in logged if line["source"] == "CELL"]

    await eventually(app_lines, what="the app's first line")
    await eventually(lambda: "Container became healthy" in cell_lines(), what="healthy")
    assert any("creating container" in line for line in cell_lines())
    assert not any("secret-token" in line for line in cell_lines())


async def test_a_repeated_start_starts_nothing(cells: Cells, droplets: Droplets) -> None:
    agent = await cells.start()
    spec = instance_spec(droplets.hello, droplets.url(droplets.hello))
    record = await start_running(cells, agent, spec)
    again = await start(cells, agent, spec)
    assert again["accepted"] and again["instance"]["state"] == "RUNNING"
    assert again["instance"]["port"] == record.port
    twin = spec.model_copy(update={"instance_guid": "twin-guid"})
    reply = await start(cells, agent, twin)
    assert reply["accepted"] and reply["instance"]["instance_guid"] == spec.instance_guid
    await asyncio.sleep(0.3)
    assert [r.guid for r in agent.instances()] == [spec.instance_guid]
    assert record_of(agent, spec.instance_guid).pid == record.pid  # type: ignore[union-attr]


async def test_concurrent_starts_download_the_droplet_once(
    cells: Cells, droplets: Droplets
) -> None:
    agent = await cells.start()
    specs = [instance_spec(droplets.hello, droplets.url(droplets.hello), index=n) for n in range(2)]
    await asyncio.gather(*(start(cells, agent, spec) for spec in specs))
    for spec in specs:
        await wait_state(agent, spec.instance_guid, InstanceState.RUNNING)
    runtime = agent.runtime
    assert isinstance(runtime, ProcessRuntime)
    assert runtime.droplets.downloads == 1


async def test_checksum_mismatch_crashes_with_download_failed(
    cells: Cells, droplets: Droplets
) -> None:
    agent = await cells.start()
    spec = instance_spec(droplets.hello, droplets.url(droplets.hello), checksum="0" * 64)
    assert (await start(cells, agent, spec))["accepted"]
    record = await wait_state(agent, spec.instance_guid, InstanceState.CRASHED)
    assert record.reason == "DOWNLOAD_FAILED"
    assert record.detail is not None and "checksum mismatch" in record.detail
    assert "secret-token" not in record.detail
    assert not agent.instance_dir(spec.instance_guid).exists()


async def test_a_missing_command_crashes_with_a_clear_detail(
    cells: Cells, droplets: Droplets
) -> None:
    seen = await recorder(cells)
    agent = await cells.start()
    spec = instance_spec(
        droplets.hello, droplets.url(droplets.hello), command="no-such-command-here"
    )
    await start(cells, agent, spec)
    record = await wait_state(agent, spec.instance_guid, InstanceState.CRASHED)
    assert record.reason == "CRASHED"
    assert record.exit_status == 127
    assert "start command was not found" in (record.detail or "")
    assert record.crash_count == 1

    def said_not_found() -> bool:
        lines = [str(line["line"]) for line in seen.of(app_logs(spec.app_guid))]
        return any("command not found" in line for line in lines)

    await eventually(said_not_found, what="bash's complaint on stderr")


async def test_a_replacement_counts_crashes_on_from_the_count_it_carries(
    cells: Cells, droplets: Droplets
) -> None:
    agent = await cells.start()
    spec = instance_spec(
        droplets.hello, droplets.url(droplets.hello), command="no-such-command", crash_count=3
    )
    reply = await start(cells, agent, spec)
    assert reply["instance"]["crash_count"] == 3
    record = await wait_state(agent, spec.instance_guid, InstanceState.CRASHED)
    assert record.crash_count == 4
    assert agent.heartbeat().instances[0].crash_count == 4


async def test_http_health_check(cells: Cells, droplets: Droplets) -> None:
    agent = await cells.start()
    check = HealthCheckSpec(type="http", endpoint="/health", interval_seconds=0.1)
    spec = instance_spec(droplets.hello, droplets.url(droplets.hello), health_check=check)
    record = await start_running(cells, agent, spec)
    assert record.state == InstanceState.RUNNING


async def test_start_timeout(cells: Cells, droplets: Droplets) -> None:
    agent = await cells.start()
    check = HealthCheckSpec(timeout_seconds=1.0, interval_seconds=0.1)
    spec = instance_spec(
        droplets.hello, droplets.url(droplets.hello), command="sleep 600", health_check=check
    )
    await start(cells, agent, spec)
    starting = await wait_state(agent, spec.instance_guid, InstanceState.STARTING)
    cells.note_pids()
    record = await wait_state(agent, spec.instance_guid, InstanceState.CRASHED)
    assert record.reason == "START_TIMEOUT"
    assert "not ready within 1s" in (record.detail or "")
    assert starting.pid is not None
    assert procfs.session_members(starting.pid) == []


async def test_a_killed_instance_crashes_and_stays_on_record(
    cells: Cells, droplets: Droplets
) -> None:
    seen = await recorder(cells)
    agent = await cells.start()
    spec = instance_spec(droplets.hello, droplets.url(droplets.hello))
    record = await start_running(cells, agent, spec)
    assert record.pid is not None
    os.kill(record.pid, signal.SIGKILL)
    crashed = await wait_state(agent, spec.instance_guid, InstanceState.CRASHED)
    assert crashed.exit_status == 137
    assert crashed.detail is not None and "killed by signal 9" in crashed.detail
    assert crashed.port is None

    def crash_event() -> dict[str, Any] | None:
        events = seen.of(INSTANCE_EVENT)
        return events[-1] if events and events[-1]["to_state"] == "CRASHED" else None

    event = await eventually(crash_event, what="the CRASHED event")
    assert event["from_state"] == "RUNNING"
    assert event["instance"]["exit_status"] == 137
    await eventually(lambda: not agent.instance_dir(spec.instance_guid).exists())
    beat = agent.heartbeat()
    assert [i.state for i in beat.instances] == [InstanceState.CRASHED]
    assert beat.allocated.containers == 0

    def exit_logged() -> bool:
        lines = [str(line["line"]) for line in seen.of(app_logs(spec.app_guid))]
        return "Exit status 137 (killed by signal 9)" in lines

    await eventually(exit_logged, what="the exit status in the app's log")

    assert (await stop(cells, agent, spec))["accepted"]
    await eventually(lambda: record_of(agent, spec.instance_guid) is None)
    await eventually(
        lambda: (
            transitions(seen.of(INSTANCE_EVENT), spec.instance_guid)[-1] == ("CRASHED", "STOPPED")
        ),
        what="the STOPPED event",
    )


async def test_stop_takes_the_instance_away(cells: Cells, droplets: Droplets) -> None:
    seen = await recorder(cells)
    agent = await cells.start()
    spec = instance_spec(droplets.hello, droplets.url(droplets.hello))
    record = await start_running(cells, agent, spec)
    assert record.pid is not None
    stale = await cells.rpc(agent, StopInstance(instance_guid=spec.instance_guid, version="v0"))
    assert (stale["accepted"], stale["reason"]) == (False, "stale")

    assert (await stop(cells, agent, spec))["accepted"]
    await eventually(lambda: record_of(agent, spec.instance_guid) is None, what="stopped")
    stopping = [("RUNNING", "STOPPING"), ("STOPPING", "STOPPED")]
    await eventually(
        lambda: transitions(seen.of(INSTANCE_EVENT), spec.instance_guid)[-2:] == stopping,
        what="the stop events",
    )
    assert procfs.session_members(record.pid) == []
    assert not agent.instance_dir(spec.instance_guid).exists()

    replay = await start(cells, agent, spec)
    assert (replay["accepted"], replay["reason"]) == (False, "stale")
    assert (await stop(cells, agent, spec))["accepted"]  # again: a no-op
    assert agent.instances() == []


async def test_stats(cells: Cells, droplets: Droplets) -> None:
    agent = await cells.start()
    spec = instance_spec(droplets.hello, droplets.url(droplets.hello))
    await start_running(cells, agent, spec)
    reply = await cells.rpc(agent, InstanceStatsRequest(process_guids=[spec.process_guid]))
    [usage] = reply["instances"]
    assert usage["instance_guid"] == spec.instance_guid
    assert usage["memory_bytes"] > 1024 * 1024
    assert usage["disk_bytes"] > 0
    assert usage["memory_quota_bytes"] == 64 * 1024 * 1024
    assert usage["uptime_seconds"] >= 0
    assert usage["cpu"] >= 0
    other = await cells.rpc(agent, InstanceStatsRequest(process_guids=["nothing"]))
    assert other["instances"] == []


async def test_stdout_and_stderr_reach_the_logs(cells: Cells, droplets: Droplets) -> None:
    seen = await recorder(cells)
    agent = await cells.start()
    spec = instance_spec(droplets.chatty, droplets.url(droplets.chatty))
    await start_running(cells, agent, spec)

    def streams() -> set[str]:
        return {
            str(line["stream"])
            for line in seen.of(app_logs(spec.app_guid))
            if line["source"] == "APP/PROC/WEB/0"
        }

    def ticks() -> list[str]:
        return [
            str(line["line"])
            for line in seen.of(app_logs(spec.app_guid))
            if line["stream"] == "stdout" and line["source"] == "APP/PROC/WEB/0"
        ]

    await eventually(lambda: streams() == {"stdout", "stderr"}, what="both streams")
    await eventually(lambda: len(ticks()) >= 3, what="three lines")
    assert ticks()[:3] == ["tick 0", "tick 1", "tick 2"]


async def test_a_disabled_cell_refuses_starts_but_keeps_running(
    cells: Cells, droplets: Droplets
) -> None:
    agent = await cells.start()
    running = instance_spec(droplets.hello, droplets.url(droplets.hello))
    await start_running(cells, agent, running)
    assert (await cells.rpc(agent, SetCellState(state="DISABLED")))["accepted"]
    refused = await start(cells, agent, instance_spec(droplets.hello, droplets.url(droplets.hello)))
    assert (refused["accepted"], refused["reason"]) == (False, "disabled")
    assert agent.heartbeat().state == "DISABLED"
    await asyncio.sleep(0.3)
    assert record_of(agent, running.instance_guid).state == InstanceState.RUNNING  # type: ignore[union-attr]
    assert (await cells.rpc(agent, SetCellState(state="ENABLED")))["accepted"]


async def test_no_room(cells: Cells, droplets: Droplets) -> None:
    agent = await cells.start(cell_settings(memory_mb=100))
    url = droplets.url(droplets.hello)
    assert (await start(cells, agent, instance_spec(droplets.hello, url)))["accepted"]
    refused = await start(cells, agent, instance_spec(droplets.hello, url))
    assert (refused["accepted"], refused["reason"]) == (False, "no_room")
    assert "memory" in refused["detail"]


async def test_invalid_command(cells: Cells) -> None:
    agent = await cells.start()
    reply = await cells.bus.request(
        cell_rpc(agent.cell_id), {"op": "start", "instance": {"nope": 1}}, timeout=5
    )
    assert (reply.data["accepted"], reply.data["reason"]) == (False, "invalid")
    unknown = await cells.bus.request(cell_rpc(agent.cell_id), {"op": "fly"}, timeout=5)
    assert unknown.data["reason"] == "invalid"


async def test_discover_makes_the_cell_heartbeat_at_once(cells: Cells) -> None:
    agent = await cells.start(cell_settings(heartbeat_interval_seconds=60))
    seen = await recorder(cells)
    await cells.bus.publish(CELL_DISCOVER, CellDiscover(requester="test").wire())
    beat = await eventually(lambda: seen.of(CELL_HEARTBEAT), within=2, what="a heartbeat")
    assert beat[0]["cell_id"] == agent.cell_id


async def test_stopping_the_agent_with_its_instances(cells: Cells, droplets: Droplets) -> None:
    agent = await cells.start()
    spec = instance_spec(droplets.hello, droplets.url(droplets.hello))
    record = await start_running(cells, agent, spec)
    await agent.stop(stop_instances=True)
    assert record.pid is not None and procfs.session_members(record.pid) == []
    assert agent.instances() == []


LISTEN_THEN_CLOSE = (
    'python3 -c "import os, socket, time; s = socket.socket(); '
    "s.bind(('127.0.0.1', int(os.environ['PORT']))); s.listen(); "
    'time.sleep(1); s.close(); time.sleep(600)"'
)


async def test_a_failed_liveness_probe_crashes_the_instance(
    cells: Cells, droplets: Droplets
) -> None:
    agent = await cells.start()
    spec = instance_spec(droplets.hello, droplets.url(droplets.hello), command=LISTEN_THEN_CLOSE)
    record = await start_running(cells, agent, spec)
    crashed = await wait_state(agent, spec.instance_guid, InstanceState.CRASHED)
    assert crashed.reason == "CRASHED"
    assert (crashed.detail or "").startswith("health check failed: connecting to port")
    assert record.pid is not None and procfs.session_members(record.pid) == []
