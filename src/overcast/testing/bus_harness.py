"""Treat both buses alike in tests: make connected buses that share one broker (a MemoryBroker
or a throwaway nats-server), and take that broker down and bring it back.

An outage is the server going away for every bus the harness made: for NATS the server process
is stopped and started again on the same port; for memory each bus simulates the disconnect."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from overcast.bus.base import Bus, BusError, BusState, Message
from overcast.bus.memory import MemoryBroker, MemoryBus
from overcast.bus.nats import NatsBus
from overcast.testing.nats import NatsServer


class BusHarness(Protocol):
    kind: str

    @property
    def url(self) -> str: ...

    async def make_bus(
        self, *, name: str = "test", request_timeout: float = 2.0, connect: bool = True
    ) -> Bus: ...

    async def outage_begins(self) -> None: ...

    async def outage_ends(self) -> None: ...

    async def aclose(self) -> None: ...


class _Tracked:
    def __init__(self) -> None:
        self.buses: list[Bus] = []

    async def _close_buses(self) -> None:
        for bus in reversed(self.buses):
            with contextlib.suppress(BusError):
                await bus.close()
        self.buses.clear()


class MemoryHarness(_Tracked):
    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.broker = MemoryBroker()
        self.memory_buses: list[MemoryBus] = []

    @property
    def url(self) -> str:
        return ""

    async def make_bus(
        self, *, name: str = "test", request_timeout: float = 2.0, connect: bool = True
    ) -> Bus:
        bus = MemoryBus(broker=self.broker, request_timeout=request_timeout, name=name)
        self.memory_buses.append(bus)
        self.buses.append(bus)
        if connect:
            await bus.connect()
        return bus

    async def outage_begins(self) -> None:
        for bus in self.memory_buses:
            bus.simulate_disconnect()

    async def outage_ends(self) -> None:
        for bus in self.memory_buses:
            bus.simulate_reconnect()

    async def aclose(self) -> None:
        await self._close_buses()


class NatsHarness(_Tracked):
    kind = "nats"

    def __init__(self, server: NatsServer, reconnect_wait: float = 0.1) -> None:
        super().__init__()
        self.server = server
        self.reconnect_wait = reconnect_wait

    @property
    def url(self) -> str:
        return self.server.url

    async def make_bus(
        self, *, name: str = "test", request_timeout: float = 2.0, connect: bool = True
    ) -> Bus:
        bus = NatsBus(
            self.server.url,
            request_timeout=request_timeout,
            max_reconnect_attempts=-1,
            reconnect_wait=self.reconnect_wait,
            name=name,
        )
        self.buses.append(bus)
        if connect:
            await bus.connect()
        return bus

    async def outage_begins(self) -> None:
        await asyncio.to_thread(self.server.stop)

    async def outage_ends(self) -> None:
        await asyncio.to_thread(self.server.start)

    async def aclose(self) -> None:
        await self._close_buses()
        await asyncio.to_thread(self.server.stop)


class Recorder:
    """A handler that keeps what it gets; `await wait_for(n)` until it has n messages."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._condition = asyncio.Condition()

    async def __call__(self, message: Message) -> None:
        async with self._condition:
            self.messages.append(message)
            self._condition.notify_all()

    @property
    def data(self) -> list[dict[str, Any]]:
        return [message.data for message in self.messages]

    async def wait_for(self, count: int, within: float = 5.0) -> list[Message]:
        async with asyncio.timeout(within), self._condition:
            await self._condition.wait_for(lambda: len(self.messages) >= count)
        return self.messages


class StateRecorder:
    """A state listener that keeps every state; `await wait_for(state)`."""

    def __init__(self) -> None:
        self.states: list[BusState] = []
        self._changed = asyncio.Event()

    def __call__(self, state: BusState) -> None:
        self.states.append(state)
        self._changed.set()

    async def wait_for(self, state: BusState, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while state not in self.states:
                self._changed.clear()
                await self._changed.wait()
