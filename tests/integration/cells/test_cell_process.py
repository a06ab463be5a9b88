"""`overcast cell` as a real process on NATS: killed with SIGKILL (its instances live on in their
own sessions), restarted on the same work dir, it re-adopts them and starts nothing twice. And
the data plane first: with the controller gone, the instances keep answering."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from overcast.bus.base import Bus
from overcast.bus.nats import NatsBus
from overcast.testing.nats import NatsServer
from overcast.testing.platform import (
    CellProcess,
    Platform,
    eventually,
    instance_answers,
    start_platform,
)
from overcast.testing.ports import next_cell_port_range


@pytest.fixture
async def platform(tmp_path: Path, nats_server: NatsServer) -> AsyncIterator[Platform]:
    async def make_bus(name: str) -> Bus:
        bus = NatsBus(nats_server.url, name=name, request_timeout=3.0)
        await bus.connect()
        return bus

    platform = await start_platform(tmp_path, make_bus=make_bus)
    try:
        yield platform
    finally:
        await platform.close()


def _cell(tmp_path: Path, nats_server: NatsServer) -> CellProcess:
    first_port, last_port = next_cell_port_range()
    return CellProcess(
        tmp_path / "cell-real",
        {
            "OVERCAST_BUS__KIND": "nats",
            "OVERCAST_BUS__URL": nats_server.url,
            "OVERCAST_CELL__ID": "real",
            "OVERCAST_CELL__HEARTBEAT_INTERVAL_SECONDS": "0.3",
            # A block of this test process's own (testing/ports.py).
            "OVERCAST_CELL__PORT_RANGE_START": str(first_port),
            "OVERCAST_CELL__PORT_RANGE_END": str(last_port),
            # SIGKILL leaves the instances running (what these tests are about); the SIGTERM
            # at the end of each test stops them, so no test leaves processes behind.
            "OVERCAST_CELL__STOP_INSTANCES_ON_EXIT": "true",
        },
    )


async def _answering(stats: list[dict[str, Any]]) -> set[str]:
    return {answer["guid"] for answer in await instance_answers(stats)}


async def test_killed_cell_process_readopts_its_instances(
    platform: Platform, tmp_path: Path, nats_server: NatsServer
) -> None:
    cell = _cell(tmp_path, nats_server)
    cell.start()
    try:
        await platform.wait_for_cells(1)
        space = await platform.space()
        app = await platform.app_with_droplet(space, "durable")
        guid = app["guid"]
        await platform.scale(guid, 2)
        await platform.post(f"/v3/apps/{guid}/actions/start")
        stats = await platform.wait_running(guid, 2)
        serving = await _answering(stats)
        assert serving == {entry["instance_guid"] for entry in stats}

        cell.kill()  # SIGKILL: no clean-up at all
        assert await _answering(stats) == serving  # instances outlive their cell

        cell.start()
        after = await platform.wait_running(guid, 2)
        assert {entry["instance_guid"] for entry in after} == serving
        assert await _answering(after) == serving
        # Nothing was started twice: the cell holds exactly the two adopted instances.
        cells = await platform.get("/v3/x/cells/real")
        assert cells["instances"] == 2
    finally:
        cell.stop()


async def test_apps_keep_serving_without_the_controller(
    platform: Platform, tmp_path: Path, nats_server: NatsServer
) -> None:
    cell = _cell(tmp_path, nats_server)
    cell.start()
    try:
        await platform.wait_for_cells(1)
        space = await platform.space()
        app = await platform.app_with_droplet(space, "steady")
        await platform.post(f"/v3/apps/{app['guid']}/actions/start")
        stats = await platform.wait_running(app["guid"], 1)
        serving = await _answering(stats)

        await platform.close()  # the whole controller: API, jobs, its bus connection

        async def still_serving() -> bool:
            return await _answering(stats) == serving

        # A few heartbeats pass without anyone listening; nothing stops.
        for _ in range(5):
            assert await eventually(still_serving)
            await asyncio.sleep(0.3)
    finally:
        cell.stop()
