"""Idle keep-alive connections to backends, per endpoint address: the most recently used first
(the least likely to have been closed by the backend), at most `max_idle` per endpoint, each
for at most `idle_timeout` seconds."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Protocol

from overcast.router.channel import Channel


class FastReceiver(Protocol):
    """Who takes a backend connection's events from its callbacks during a fast exchange."""

    def backend_data(self, data: bytes) -> None: ...

    def wake(self) -> None: ...


class BackendConnection(Channel):
    """A connection to one endpoint. Bytes arriving while it sits idle in the pool make it
    unusable (a response to nothing).

    While `receiver` is set (a client connection's fast exchange), received bytes go to its
    `backend_data` instead of the queue, and the end of the stream or a `wake` wakes the
    receiver instead (which takes its bytes back into the queue: see proxy.py)."""

    __slots__ = ("address", "idle_since", "receiver")

    def __init__(self, address: str, on_lost: Callable[[Channel], None] | None = None) -> None:
        super().__init__(on_lost)
        self.address = address
        self.idle_since = 0.0
        self.receiver: FastReceiver | None = None

    def data_received(self, data: bytes) -> None:
        receiver = self.receiver
        if receiver is not None:
            receiver.backend_data(data)
        else:
            Channel.data_received(self, data)

    def wake(self) -> None:
        receiver = self.receiver
        if receiver is not None:
            receiver.wake()  # hands the exchange over: `receiver` is None after
        Channel.wake(self)

    @property
    def reusable(self) -> bool:
        return not self.closed and not self.eof and not self.has_data()


class ConnectionPool:
    def __init__(self, *, max_idle: int, idle_timeout: float, clock: Callable[[], float]) -> None:
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self._clock = clock
        self._idle: dict[str, deque[BackendConnection]] = {}

    def take(self, address: str) -> BackendConnection | None:
        """An idle connection to `address` that is still usable, or None."""
        idle = self._idle.get(address)
        if not idle:
            return None
        oldest_allowed = self._clock() - self.idle_timeout
        while idle:
            connection = idle.pop()
            if connection.reusable and connection.idle_since >= oldest_allowed:
                return connection
            connection.close()
        return None

    def put(self, connection: BackendConnection) -> None:
        if self.max_idle <= 0 or not connection.reusable:
            connection.close()
            return
        idle = self._idle.get(connection.address)
        if idle is None:
            idle = self._idle[connection.address] = deque()
        if len(idle) >= self.max_idle:
            idle.popleft().close()
        connection.idle_since = self._clock()
        idle.append(connection)

    def sweep(self) -> None:
        """Close the connections idle for too long or closed by their backend."""
        oldest_allowed = self._clock() - self.idle_timeout
        for address in list(self._idle):
            idle = self._idle[address]
            keep = deque(c for c in idle if c.reusable and c.idle_since >= oldest_allowed)
            for connection in idle:
                if connection not in keep:
                    connection.close()
            if keep:
                self._idle[address] = keep
            else:
                del self._idle[address]

    def idle_count(self, address: str | None = None) -> int:
        if address is not None:
            return len(self._idle.get(address, ()))
        return sum(len(idle) for idle in self._idle.values())

    def close_all(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


async def open_connection(
    host: str, port: int, address: str, *, within: float, on_lost: Callable[[Channel], None]
) -> BackendConnection:
    """A new connection to an endpoint; OSError or TimeoutError when it cannot be made."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within):
        _, protocol = await loop.create_connection(
            lambda: BackendConnection(address, on_lost), host, port
        )
    return protocol
