"""Fixtures for the data plane: backends on 127.0.0.1 and proxies in front of them, all
stopped after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from overcast.router.endpoints import AccessRecord
from overcast.router.proxy import ProxyOptions, ProxyServer
from overcast.testing.clock import FakeClock
from tests.integration.router.backends import Backend, Handler, Routes, echo

StartBackend = Callable[..., Awaitable[Backend]]


class Proxy:
    """A started ProxyServer with what the tests look at."""

    def __init__(self, server: ProxyServer, port: int, routes: Routes, clock: FakeClock) -> None:
        self.server = server
        self.port = port
        self.routes = routes
        self.clock = clock
        self.records: list[AccessRecord] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metric(self, name: str, **labels: str) -> float:
        value = self.server.registry.get_sample_value(name, labels)
        return value or 0.0


StartProxy = Callable[..., Awaitable[Proxy]]


@pytest.fixture
async def backend_factory() -> AsyncIterator[StartBackend]:
    started: list[Backend] = []

    async def start(handler: Handler = echo, name: str = "backend") -> Backend:
        backend = await Backend(handler=handler, name=name).start()
        started.append(backend)
        return backend

    yield start
    for backend in started:
        await backend.close()


@pytest.fixture
async def proxy_factory() -> AsyncIterator[StartProxy]:
    started: list[ProxyServer] = []

    async def start(routes: Routes | None = None, *, ready: bool = True, **options: Any) -> Proxy:
        clock = FakeClock()
        routes = routes or Routes()
        options.setdefault("drain_seconds", 1.0)
        records: list[AccessRecord] = []
        server = ProxyServer(
            routes,
            access=records.append,
            options=ProxyOptions(clock=clock.monotonic, **options),
            ready=ready,
        )
        port = await server.start("127.0.0.1", 0)
        started.append(server)
        proxy = Proxy(server, port, routes, clock)
        proxy.records = records
        return proxy

    yield start
    for server in started:
        await server.stop()
