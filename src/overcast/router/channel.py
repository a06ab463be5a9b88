"""A byte stream over an asyncio transport, lighter than StreamReader/StreamWriter: received
chunks are queued as they came (no copying into one buffer), reading pauses above a high-water
mark, and one coroutine at a time may wait for "something happened" (data, end of stream, or
an explicit `wake`)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import cast

HIGH_WATER = 256 * 1024


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class Channel(asyncio.Protocol):
    __slots__ = (
        "_chunks",
        "_drain",
        "_on_lost",
        "_read_paused",
        "_waiter",
        "_write_paused",
        "buffered",
        "closed",
        "eof",
        "transport",
    )

    def __init__(self, on_lost: Callable[[Channel], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False  # the connection is gone
        self.eof = False  # the peer sent everything it will
        self.buffered = 0
        self._chunks: deque[bytes] = deque()
        self._waiter: asyncio.Future[bool] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._on_lost = on_lost

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self._read_paused:
            self._pause_reading()
        self.wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self.wake()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.eof = True
        self.wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionResetError("connection lost"))
        if self._on_lost is not None:
            self._on_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- reading -----------------------------------------------------------------------------

    def take(self) -> bytes | None:
        """The next received chunk; b"" at the end of the stream; None when nothing is there
        yet."""
        chunks = self._chunks
        if chunks:
            data = chunks.popleft()
            self.buffered -= len(data)
            if self._read_paused and self.buffered <= HIGH_WATER // 4:
                self._resume_reading()
            return data
        return b"" if self.eof else None

    def unread(self, data: bytes) -> None:
        if data:
            self._chunks.appendleft(data)
            self.buffered += len(data)

    def has_data(self) -> bool:
        return bool(self._chunks)

    async def wait(self, within: float | None = None) -> bool:
        """Until `wake` (data, end of stream, or anyone's call); False when `within` seconds
        passed first. The caller checks its condition before and after."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(within, _expire, waiter) if within is not None else None
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if self._waiter is waiter:
                self._waiter = None

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused:
            self._read_paused = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()

    # -- writing -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        if not self.closed and self.transport is not None:
            self.transport.writelines(data)

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    async def drain(self) -> None:
        """Until the transport's write buffer is below its high-water mark; raises
        ConnectionResetError when the connection is (or goes) away."""
        if self.closed:
            raise ConnectionResetError("connection lost")
        if not self._write_paused:
            return
        drain = self._drain
        if drain is None or drain.done():
            drain = self._drain = asyncio.get_running_loop().create_future()
        await drain

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
