"""Stand-ins for app instances behind the proxy, and raw-socket clients.

`Backend` parses what the proxy sends with h11, so every request the proxy forwards must be
valid HTTP/1.1; it records what it saw and answers through a handler."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import h11

from overcast.router.endpoints import Endpoint, LoadBalancing, Route


@dataclass
class Seen:
    """A request as one backend received it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    connection: int
    body: bytes = b""

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


class Exchange:
    """One request at a Backend; its handler answers through it."""

    def __init__(
        self,
        backend: Backend,
        connection: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        seen: Seen,
    ) -> None:
        self.backend = backend
        self.h11 = connection
        self.reader = reader
        self.writer = writer
        self.seen = seen
        # Set by a handler that answered (or not) with raw bytes: the connection then closes.
        self.close = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            event = await self.backend.next_event(self.h11, self.reader)
            if isinstance(event, h11.Data):
                self.seen.body += event.data
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise AssertionError(f"unexpected {event!r}")

    async def body(self) -> bytes:
        async for _ in self.chunks():
            pass
        return self.seen.body

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def respond(
        self, status: int = 200, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        fields = [*headers, ("Content-Length", str(len(body)))]
        await self.send(h11.Response(status_code=status, headers=fields))
        if body:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    async def raw(self, data: bytes) -> None:
        """Write bytes as they are (the handler then owns the framing; the connection closes
        afterwards unless the handler resets `close`)."""
        self.close = True
        self.writer.write(data)
        await self.writer.drain()


Handler = Callable[[Exchange], Awaitable[None]]


async def echo(exchange: Exchange) -> None:
    """Read the body, answer `<name> <method> <target> <body length>`."""
    body = await exchange.body()
    seen = exchange.seen
    text = f"{exchange.backend.name} {seen.method} {seen.target} {len(body)}"
    await exchange.respond(200, [("X-Backend", exchange.backend.name)], text.encode())


@dataclass
class Backend:
    handler: Handler = echo
    name: str = "backend"
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> Backend:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, app_guid=self.name)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @staticmethod
    async def next_event(connection: h11.Connection, reader: asyncio.StreamReader) -> object:
        while True:
            event = connection.next_event()
            if event is not h11.NEED_DATA:
                return event
            connection.receive_data(await reader.read(256 * 1024))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        index = self.connections
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                event = await self.next_event(connection, reader)
                if not isinstance(event, h11.Request):
                    break
                seen = Seen(
                    event.method.decode(),
                    event.target.decode(),
                    [(name.decode(), value.decode()) for name, value in event.headers.raw_items()],
                    index,
                )
                self.seen.append(seen)
                self.arrived.set()
                exchange = Exchange(self, connection, reader, writer, seen)
                await self.handler(exchange)
                if exchange.close:
                    break
                while connection.their_state is h11.SEND_BODY:
                    await self.next_event(connection, reader)
                if h11.MUST_CLOSE in (connection.our_state, connection.their_state):
                    break
                connection.start_next_cycle()
        except (h11.ProtocolError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            self._tasks.discard(task)


class Routes:
    """A resolver: host -> Route (any path)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.asked: list[tuple[str, str]] = []

    def add(
        self, host: str, *endpoints: Endpoint | Backend, balancing: LoadBalancing = "round-robin"
    ) -> Route:
        resolved = tuple(e.endpoint if isinstance(e, Backend) else e for e in endpoints)
        route = Route(host, "/", resolved, load_balancing=balancing)
        self.routes[host] = route
        return route

    def __call__(self, host: str, path: str) -> Route | None:
        self.asked.append((host, path))
        return self.routes.get(host)


# -- raw clients ----------------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    head: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


async def read_to_end(reader: asyncio.StreamReader, within: float = 10.0) -> bytes:
    """Everything until the peer closes the connection: a proxy that never closes it fails
    the test within `within` seconds instead of holding it until pytest-timeout."""
    async with asyncio.timeout(within):
        return await reader.read()


async def read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> Response:
    """One response from a raw connection: Content-Length, chunked, or until the end."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    response = Response(status, headers, b"", head)
    if head_only or status in (101, 204, 304) or 100 <= status < 200:
        return response
    length = response.header("Content-Length")
    if length is not None:
        response.body = await reader.readexactly(int(length))
    elif (response.header("Transfer-Encoding") or "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        response.body = body
    else:
        response.body = await reader.read()
    return response


async def raw_request(port: int, data: bytes, *, timeout: float = 5.0) -> tuple[Response, bytes]:
    """Send `data` at once on a new connection; the first response and whatever follows until
    the proxy closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            response = await read_response(reader)
            rest = await reader.read()
        return response, rest
    finally:
        writer.close()
