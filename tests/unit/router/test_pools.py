"""Idle backend connections: most recent first, bounded per endpoint, aged out by the clock,
never handed out once closed or talked to by the backend."""

from __future__ import annotations

import asyncio

from overcast.router.pools import BackendConnection, ConnectionPool
from overcast.testing.clock import FakeClock


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def connection(address: str = "10.0.0.1:80") -> tuple[BackendConnection, FakeTransport]:
    transport = FakeTransport()
    made = BackendConnection(address)
    made.connection_made(transport)
    return made, transport


def pool(clock: FakeClock, max_idle: int = 2) -> ConnectionPool:
    return ConnectionPool(max_idle=max_idle, idle_timeout=30, clock=clock.monotonic)


def test_most_recently_used_first() -> None:
    idle = pool(FakeClock())
    first, _ = connection()
    second, _ = connection()
    idle.put(first)
    idle.put(second)
    assert idle.take("10.0.0.1:80") is second
    assert idle.take("10.0.0.1:80") is first
    assert idle.take("10.0.0.1:80") is None
    assert idle.take("10.0.0.2:80") is None


def test_at_most_max_idle_per_endpoint() -> None:
    idle = pool(FakeClock(), max_idle=2)
    made = [connection() for _ in range(3)]
    for each, _ in made:
        idle.put(each)
    assert made[0][1].closed  # the oldest made room
    assert idle.idle_count("10.0.0.1:80") == 2
    other, _ = connection("10.0.0.2:80")
    idle.put(other)
    assert idle.idle_count() == 3


def test_idle_timeout() -> None:
    clock = FakeClock()
    idle = pool(clock)
    old, old_transport = connection()
    idle.put(old)
    clock.advance(31)
    assert idle.take("10.0.0.1:80") is None
    assert old_transport.closed


def test_sweep_closes_old_and_dead_connections() -> None:
    clock = FakeClock()
    idle = pool(clock)
    old, old_transport = connection()
    idle.put(old)
    clock.advance(20)
    young, young_transport = connection()
    idle.put(young)
    dead, dead_transport = connection("10.0.0.2:80")
    idle.put(dead)
    dead.eof_received()
    clock.advance(15)
    idle.sweep()
    assert old_transport.closed and dead_transport.closed and not young_transport.closed
    assert idle.idle_count() == 1


def test_unusable_connections_are_not_handed_out() -> None:
    idle = pool(FakeClock(), max_idle=5)
    talked, talked_transport = connection()
    ended, _ = connection()
    lost, _ = connection()
    for each in (talked, ended, lost):
        idle.put(each)
    talked.data_received(b"HTTP/1.1 200 OK\r\n")  # a response to nothing
    ended.eof_received()
    lost.connection_lost(None)
    assert idle.take("10.0.0.1:80") is None
    assert talked_transport.closed


def test_closed_connections_are_not_pooled() -> None:
    idle = pool(FakeClock())
    lost, transport = connection()
    lost.connection_lost(None)
    idle.put(lost)
    assert idle.idle_count() == 0 and transport.closed


def test_close_all() -> None:
    idle = pool(FakeClock())
    made, transport = connection()
    idle.put(made)
    idle.close_all()
    assert transport.closed and idle.idle_count() == 0
