"""Integration fixtures shared across directories: a platform (a real controller with its API
on loopback and two real cells in zones z1 and z2) on the memory bus and on NATS; `routed` is
the same with a router started first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from overcast.testing.platform import Platform, memory_buses, nats_buses, start_platform


async def _two_cells(
    request: pytest.FixtureRequest, tmp_path: Path, *, router: bool
) -> AsyncIterator[Platform]:
    if request.param == "memory":
        make_bus = memory_buses()
    else:
        make_bus = nats_buses(request.getfixturevalue("nats_server").url)
    platform = await start_platform(tmp_path, make_bus=make_bus)
    try:
        if router:
            await platform.add_router()
        await platform.add_cell("cell-a", zone="z1")
        await platform.add_cell("cell-b", zone="z2")
        await platform.wait_for_cells(2)
        if router:
            await platform.wait_router_ready()
        yield platform
    finally:
        await platform.close()


@pytest.fixture(params=["memory", "nats"])
async def platform(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    async for ready in _two_cells(request, tmp_path, router=False):
        yield ready


@pytest.fixture(params=["memory", "nats"])
async def routed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Platform]:
    async for ready in _two_cells(request, tmp_path, router=True):
        yield ready
