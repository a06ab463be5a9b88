"""The cells issue's "done when", end to end with real processes: a real controller (API on a
loopback port, SQL store, job engine) and two real cell agents in different zones, on the memory
bus and on NATS. Instances are real processes answering HTTP."""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import httpx
import pytest

from overcast.bus import subjects
from overcast.testing.platform import (
    Platform,
    eventually,
    instance_answers,
)


async def test_start_scale_stop_across_zones(platform: Platform) -> None:
    space = await platform.space()
    app = await platform.app_with_droplet(space, "hello")
    guid = app["guid"]
    await platform.scale(guid, 3)
    await platform.post(f"/v3/apps/{guid}/actions/start")

    stats = await platform.wait_running(guid, 3)
    cells = collections.Counter(entry["cell_id"] for entry in stats)
    assert sorted(cells.values()) == [1, 2], cells  # spread over both zones
    answers = await instance_answers(stats)
    assert sorted(int(answer["index"]) for answer in answers) == [0, 1, 2]
    assert all(entry["usage"]["mem"] > 0 for entry in stats)
    assert all(entry["uptime"] >= 0 and entry["mem_quota"] == 256 * 1024 * 1024 for entry in stats)

    await platform.scale(guid, 5)
    stats = await platform.wait_running(guid, 5)
    assert sorted(collections.Counter(e["cell_id"] for e in stats).values()) in ([2, 3],)
    await instance_answers(stats)

    await platform.scale(guid, 1)
    await platform.wait_running(guid, 1)
    await eventually(lambda: _only(platform, guid, 1))

    # Logs: the app's own lines and the cell's, kept by the controller.
    logs = await platform.get(f"/v3/x/apps/{guid}/logs", params={"limit": 1000})
    sources = {line["source"] for line in logs["resources"]}
    assert "APP/PROC/WEB/0" in sources and "CELL" in sources, sources

    await platform.post(f"/v3/apps/{guid}/actions/stop")
    await eventually(lambda: _only(platform, guid, 0))
    stats = await platform.stats(guid)
    assert [entry["state"] for entry in stats] == ["DOWN"]


async def _only(platform: Platform, app_guid: str, count: int) -> bool:
    return len(platform.instance_reports(app_guid)) == count


async def test_cell_restart_readopts_instances(platform: Platform) -> None:
    space = await platform.space()
    app = await platform.app_with_droplet(space, "sticky")
    guid = app["guid"]
    await platform.scale(guid, 2)
    await platform.post(f"/v3/apps/{guid}/actions/start")
    before = {entry["instance_guid"]: entry for entry in await platform.wait_running(guid, 2)}

    # Stop both cell processes without touching their instances, then start new ones on the
    # same work dirs: every instance is re-adopted, none is started twice.
    pids = {r.instance_guid: r for r in platform.instance_reports(guid)}
    await platform.stop_cell("cell-a", stop_instances=False)
    await platform.stop_cell("cell-b", stop_instances=False)
    await instance_answers(list(before.values()))  # the data plane kept serving meanwhile
    await platform.add_cell("cell-a", zone="z1")
    await platform.add_cell("cell-b", zone="z2")
    after = {entry["instance_guid"]: entry for entry in await platform.wait_running(guid, 2)}
    assert set(after) == set(before)
    assert {r.instance_guid for r in platform.instance_reports(guid)} == set(pids)
    await instance_answers(list(after.values()))


async def test_disabled_cell_gets_no_new_instances(platform: Platform) -> None:
    response = await platform.request("PATCH", "/v3/x/cells/cell-b", json={"state": "DISABLED"})
    assert response.json()["state"] == "DISABLED"
    space = await platform.space()
    app = await platform.app_with_droplet(space, "placed")
    guid = app["guid"]
    await platform.scale(guid, 3)
    await platform.post(f"/v3/apps/{guid}/actions/start")
    stats = await platform.wait_running(guid, 3)
    assert {entry["cell_id"] for entry in stats} == {"cell-a"}

    await platform.request("PATCH", "/v3/x/cells/cell-b", json={"state": "ENABLED"})
    cells = await platform.get("/v3/x/cells")
    assert {cell["guid"]: cell["state"] for cell in cells["resources"]} == {
        "cell-a": "ENABLED",
        "cell-b": "ENABLED",
    }


async def test_restart_one_instance_and_crash_details(platform: Platform) -> None:
    space = await platform.space()
    app = await platform.app_with_droplet(space, "single")
    guid = app["guid"]
    await platform.scale(guid, 2)
    await platform.post(f"/v3/apps/{guid}/actions/start")
    first = await platform.wait_running(guid, 2)
    process = await platform.web_process(guid)
    await platform.request("DELETE", f"/v3/processes/{process['guid']}/instances/1", expect=204)

    async def replaced() -> bool:
        stats = await platform.stats(guid)
        return (
            [e["state"] for e in stats] == ["RUNNING", "RUNNING"]
            and stats[1]["instance_guid"] != first[1]["instance_guid"]
            and stats[0]["instance_guid"] == first[0]["instance_guid"]
        )

    await eventually(replaced)

    # An exit nobody asked for is a crash, with its reason in the stats (no restart yet: that
    # is the health manager's job).
    port = first[0]["instance_ports"][0]["external"]
    async with httpx.AsyncClient(timeout=5) as http:
        with pytest.raises(httpx.HTTPError):
            await http.get(f"http://{first[0]['host']}:{port}/exit")

    async def crashed() -> dict[str, Any] | None:
        stats = await platform.stats(guid)
        return stats[0] if stats[0]["state"] == "CRASHED" else None

    entry = await eventually(crashed)
    assert "status 3" in entry["details"], entry


async def test_unplaceable_app_reports_why(platform: Platform) -> None:
    space = await platform.space()
    app = await platform.app_with_droplet(space, "huge")
    guid = app["guid"]
    await platform.post(
        f"/v3/apps/{guid}/processes/web/actions/scale", {"memory_in_mb": 1024 * 1024}
    )
    await platform.post(f"/v3/apps/{guid}/actions/start")

    async def explained() -> dict[str, Any] | None:
        stats = await platform.stats(guid)
        return stats[0] if stats[0]["details"] else None

    entry = await eventually(explained)
    assert entry["state"] == "DOWN"
    assert "insufficient resources" in entry["details"], entry
    events = await platform.get("/v3/audit_events", params={"target_guids": guid})
    assert any(e["type"] == "audit.app.process.unplaceable" for e in events["resources"])


async def test_a_start_nobody_answers_is_placed_elsewhere(platform: Platform) -> None:
    """A cell that heartbeats but never answers (hung, partitioned): its start times out and
    the instance is placed on a cell that answers."""
    platform.parts.controller.scheduler.rpc_timeout = 1.0
    bus = await platform.make_bus("silent-cell")
    template = platform.cells["cell-b"].heartbeat()
    await platform.stop_cell("cell-b", stop_instances=True)
    silent = template.model_copy(
        update={"cell_id": "silent", "zone": "z2", "instances": [], "seq": 0}
    )

    async def heartbeat_forever() -> None:
        while True:
            now = time.time()
            await bus.publish(
                subjects.CELL_HEARTBEAT, silent.model_copy(update={"sent_at": now}).wire()
            )
            await asyncio.sleep(0.2)

    async def swallow(_message: object) -> None:
        pass  # receives the command, never answers: the request must time out

    await bus.subscribe(subjects.cell_rpc("silent"), swallow)
    beating = asyncio.create_task(heartbeat_forever())
    try:
        await eventually(lambda: _has_cell(platform, "silent"))
        space = await platform.space()
        app = await platform.app_with_droplet(space, "patient")
        guid = app["guid"]
        await platform.scale(guid, 2)
        await platform.post(f"/v3/apps/{guid}/actions/start")
        stats = await platform.wait_running(guid, 2)
        assert {entry["cell_id"] for entry in stats} == {"cell-a"}
    finally:
        beating.cancel()
        await bus.close()


async def _has_cell(platform: Platform, cell_id: str) -> bool:
    cells = await platform.get("/v3/x/cells")
    return any(cell["guid"] == cell_id for cell in cells["resources"])
