"""Integration fixtures shared across directories: a platform (a real controller with its API
on loopback and two real cells in zones z1 and z2) on the memory bus and on NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from overcast.testing.platform import Platform, memory_buses, nats_buses, start_platform


@pytest.fixture(params=["memory", "nats"])
async def platform(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    if request.param == "memory":
        make_bus = memory_buses()
    else:
        make_bus = nats_buses(request.getfixturevalue("nats_server").url)
    platform = await start_platform(tmp_path, make_bus=make_bus)
    try:
        await platform.add_cell("cell-a", zone="z1")
        await platform.add_cell("cell-b", zone="z2")
        await platform.wait_for_cells(2)
        yield platform
    finally:
        await platform.close()
