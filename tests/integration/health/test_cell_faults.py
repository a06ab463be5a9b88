"""Cell faults, with real processes on NATS: an in-process cell (z1), `overcast cell` as its own
process (z2), a router and the health service. Killing the cell process with all its instances
moves them to the other cell, answering through the router; pausing it (SIGSTOP) past being
declared lost re-places its instances, and when it resumes its own copies are the ones stopped,
so no duplicate remains."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from overcast.testing.nats import NatsServer
from overcast.testing.platform import CellProcess, Platform, eventually, nats_buses, start_platform
from overcast.testing.ports import next_cell_port_range

DOMAIN = "apps.localhost"


@pytest.fixture
async def platform(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Platform]:
    platform = await start_platform(tmp_path, make_bus=nats_buses(nats_server.url))
    try:
        await platform.add_router()
        await platform.add_cell("local", zone="z1")
        yield platform
    finally:
        await platform.close()


@pytest.fixture
def remote(tmp_path: Path, nats_server: NatsServer) -> Iterator[CellProcess]:
    first_port, last_port = next_cell_port_range()
    cell = CellProcess(
        tmp_path / "cell-remote",
        {
            "OVERCAST_BUS__KIND": "nats",
            "OVERCAST_BUS__URL": nats_server.url,
            "OVERCAST_CELL__ID": "remote",
            "OVERCAST_CELL__ZONE": "z2",
            "OVERCAST_CELL__HEARTBEAT_INTERVAL_SECONDS": "0.3",
            # A block of this test process's own (testing/ports.py).
            "OVERCAST_CELL__PORT_RANGE_START": str(first_port),
            "OVERCAST_CELL__PORT_RANGE_END": str(last_port),
            "OVERCAST_CELL__STOP_INSTANCES_ON_EXIT": "true",
        },
    )
    cell.start()
    try:
        yield cell
    finally:
        if cell.process is not None:
            cell.process.send_signal(signal.SIGCONT)
        cell.stop()
        cell.kill_instances()


async def _spread_app(platform: Platform, name: str) -> dict[str, Any]:
    await platform.wait_for_cells(2)
    await platform.wait_router_ready()
    space = await platform.space()
    app = await platform.app_with_droplet(space, name)
    await platform.map_route(app["guid"], space, name)
    await platform.scale(app["guid"], 2)
    await platform.post(f"/v3/apps/{app['guid']}/actions/start")
    stats = await platform.wait_running(app["guid"], 2)
    assert {entry["cell_id"] for entry in stats} == {"local", "remote"}  # one per zone
    return app


async def _all_on_local(platform: Platform, app_guid: str) -> list[dict[str, Any]] | None:
    stats = await platform.stats(app_guid)
    running = [entry for entry in stats if entry["state"] == "RUNNING"]
    if len(stats) == 2 and len(running) == 2 and {e["cell_id"] for e in running} == {"local"}:
        return stats
    return None


async def _both_answer(platform: Platform, name: str) -> bool:
    async with httpx.AsyncClient(base_url=platform.router_url(), timeout=5) as http:
        seen = set()
        for _ in range(10):
            response = await http.get("/", headers={"Host": f"{name}.{DOMAIN}"})
            if response.status_code != 200:
                return False
            seen.add(response.json()["index"])
    return seen == {"0", "1"}


async def test_a_killed_cell_s_instances_answer_elsewhere(
    platform: Platform, remote: CellProcess
) -> None:
    await platform.add_health()
    app = await _spread_app(platform, "movers")
    assert remote.process is not None
    remote.kill()  # the cell process ...
    assert remote.kill_instances() >= 1  # ... and everything it ran

    await eventually(lambda: _all_on_local(platform, app["guid"]), within=30)

    async def answering() -> bool:
        return await _both_answer(platform, "movers")

    await eventually(answering, within=15)
    health = platform.health
    assert health is not None and health.counters.starts_by_reason["LOST_WITH_CELL"] == 1


async def test_a_paused_cell_comes_back_without_duplicates(
    platform: Platform, remote: CellProcess
) -> None:
    await platform.add_health()
    app = await _spread_app(platform, "paused")
    assert remote.process is not None
    remote.process.send_signal(signal.SIGSTOP)

    async def replaced() -> bool:
        stats = await platform.stats(app["guid"])
        return any(e["cell_id"] == "local" and e["state"] == "RUNNING" for e in stats) and (
            sum(1 for e in stats if e["cell_id"] == "local") == 2
        )

    await eventually(replaced, within=30)
    # Judged lost: the routers were told, and no longer send the paused cell's instance
    # requests (it would answer: only the cell agent is paused, not its instances).
    await eventually(lambda: _no_endpoint_on(platform, "paused", "remote"), within=5)
    sightings: list[bool] = []
    watching = asyncio.create_task(_watch_endpoints(platform, "paused", "remote", sightings))
    remote.process.send_signal(signal.SIGCONT)
    # Back: its old instance is the duplicate, and goes; the two on `local` stay.
    await eventually(lambda: _all_on_local(platform, app["guid"]), within=30)

    async def remote_empty() -> bool:
        cell = await platform.get("/v3/x/cells/remote")
        return bool(cell["instances"] == 0)

    await eventually(remote_empty, within=30)
    watching.cancel()
    assert sightings and not any(sightings)  # its route was not used meanwhile
    assert await _both_answer(platform, "paused")


def _cells_behind(platform: Platform, name: str) -> set[str]:
    route = platform.routers["router"].table.lookup(f"{name}.{DOMAIN}", "/")
    return {endpoint.cell_id for endpoint in route.endpoints} if route else set()


async def _no_endpoint_on(platform: Platform, name: str, cell_id: str) -> bool:
    return cell_id not in _cells_behind(platform, name)


async def _watch_endpoints(
    platform: Platform, name: str, cell_id: str, sightings: list[bool]
) -> None:
    while True:
        sightings.append(cell_id in _cells_behind(platform, name))
        await asyncio.sleep(0.05)
