"""The bus conformance fixtures: every test gets a harness for `memory` and one for `nats` (its
own throwaway nats-server, so restart tests disturb nobody)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from overcast.testing.bus_harness import BusHarness, MemoryHarness, NatsHarness
from overcast.testing.nats import NatsServer, nats_binary
from overcast.testing.servers import missing_server


@pytest.fixture(params=["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[BusHarness]:
    made: BusHarness
    if request.param == "nats":
        binary = nats_binary()
        if binary is None:
            missing_server("nats-server")
        server = NatsServer(binary)
        await asyncio.to_thread(server.start)
        made = NatsHarness(server)
    else:
        made = MemoryHarness()
    try:
        yield made
    finally:
        await made.aclose()
