"""The built-in data plane: an asyncio HTTP/1.1 reverse proxy in front of the app instances.

One `ProxyServer` listens on one address. Each client connection is parsed by llhttp
(`httptools`, strict: no leniency flag is set) with the checks below on top, and served by one
task, one request at a time, in order (pipelined requests wait their turn). A request is routed
by its Host (lower-cased, port stripped) and path (query stripped) through `resolve`, sent to an
endpoint chosen by `Balancer` over a pooled keep-alive connection or a new one, and the response
is streamed back. Bodies are streamed both ways with flow control; nothing is buffered whole.
docs/router.md ("Data plane") is the user-facing description of everything here."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from overcast.core.logging import get_logger
from overcast.router import http1
from overcast.router.balancer import Balancer, EndpointState
from overcast.router.channel import HIGH_WATER, Channel
from overcast.router.endpoints import AccessRecord, AccessSink, Endpoint, Resolver, Route
from overcast.router.http1 import BodyKind, ProtocolError
from overcast.router.inbound import Answer, Request, RequestReader, render_request_head
from overcast.router.metrics import ProxyMetrics
from overcast.router.pools import BackendConnection, ConnectionPool, open_connection

log = get_logger("overcast.router.proxy")


@dataclass(frozen=True)
class ProxyOptions:
    """The data plane's limits and timeouts (seconds)."""

    # A request head (request line and header lines) above this gets 431; so do more fields.
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    # A backend response head above this is a failed exchange (502).
    max_response_header_bytes: int = 64 * 1024
    # From a connection's accept (or a request's first byte) to the end of the request head.
    client_header_timeout: float = 10.0
    # A keep-alive client connection with no request (or a request body that stalls) is closed.
    client_idle_timeout: float = 60.0
    backend_connect_timeout: float = 5.0
    # From the request's last byte sent to the response head received: 504 beyond.
    backend_response_timeout: float = 60.0
    # A pooled backend connection unused for this long is closed.
    backend_idle_timeout: float = 30.0
    # Requests in flight per endpoint; beyond it a request gets 503 at once (no queueing).
    max_connections_per_endpoint: int = 256
    # An endpoint whose connection could not be made gets no requests for this long.
    ineligible_seconds: float = 30.0
    # Idle keep-alive connections kept per endpoint.
    max_idle_connections_per_endpoint: int = 32
    # On stop, requests in flight get this long to finish.
    drain_seconds: float = 10.0
    # X-Forwarded-Proto as sent to the backends.
    scheme: str = "http"
    # Intervals (durations, ineligibility, pool ages) and access-record start times.
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time


# The router's own answers: (status, X-Cf-Routererror, body).
_NOT_READY = (503, "not_ready", "503 Service Unavailable: router not ready\n")
_NO_ENDPOINTS = "503 Service Unavailable: Requested route ('{host}') has no available endpoints.\n"
_UNKNOWN_ROUTE = "404 Not Found: Requested route ('{host}') does not exist.\n"
_LIMIT = (
    503,
    "connection_limit_reached",
    "503 Service Unavailable: All endpoints of this route are at their connection limit.\n",
)
_FAILED = (
    502,
    "endpoint_failure",
    "502 Bad Gateway: Registered endpoint failed to handle the request.\n",
)
_TIMEOUT = (504, "gateway_timeout", "504 Gateway Timeout: The endpoint did not respond in time.\n")
_LOOKUP = (500, "route_lookup_failed", "500 Internal Server Error: Route lookup failed.\n")
_REQUEST_TIMEOUT = (408, "request_timeout", "408 Request Timeout\n")
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_RETRYABLE = frozenset({b"GET", b"HEAD"})
# The fast path holds a request body, or a response (head and body), this large whole.
_FAST_MAX = 64 * 1024


class _Stale(Exception):
    """A pooled connection was closed by its backend before answering anything."""


def _nothing() -> None:
    pass


class _Handoff:
    """A request the fast path began and the task finishes: the endpoint chosen (and counted
    in flight), and when the request was already sent, its connection, head and deadline."""

    __slots__ = ("connection", "deadline", "endpoint", "head", "route", "state")

    def __init__(
        self,
        route: Route,
        endpoint: Endpoint,
        state: EndpointState,
        connection: BackendConnection | None = None,
        head: bytes = b"",
        deadline: float = 0.0,
    ) -> None:
        self.route = route
        self.endpoint = endpoint
        self.state = state
        self.connection = connection
        self.head = head
        self.deadline = deadline


class _ClientConnection(Channel):
    """One client connection: the llhttp callbacks fill a queue of requests, one task serves
    them in order. After a WebSocket upgrade the connection is a plain byte stream.

    The fast path: the common exchange (the task idle, one complete request with at most a
    small body, a pooled backend connection, a response of a known length that arrives whole
    within a few reads) is served from the callbacks alone, without waking the task: the
    request is written from `data_received`, the response relayed from the backend
    connection's. Anything else on the way (1xx, an upgrade, a chunked or long or invalid
    response, the backend closing, a timeout, more client bytes, the client leaving, a stop)
    hands the exchange to the task, which carries on exactly as if it had begun it."""

    def __init__(self, server: ProxyServer) -> None:
        super().__init__()
        self._server = server
        self._options = options = server.options
        self._reader = RequestReader(
            max_header_bytes=options.max_header_bytes,
            max_headers=options.max_headers,
            clock=options.clock,
            wall_clock=options.wall_clock,
            on_event=_nothing,  # data_received wakes the task when it has something to do
        )
        self._requests = self._reader.requests
        self._raw = False
        self._idle = True
        self._accepted = 0.0
        # When the last request was answered (loop time); -1 before the first.
        self._last_done = -1.0
        # The task waits for a request (in `_next_request`) and nothing woke it since.
        self._parked = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # The fast exchange in progress (its request is `_requests[0]`).
        self._fast: Request | None = None
        self._fast_plan: _Handoff | None = None
        self._fast_buffer = b""  # what the backend sent so far
        self._fast_response: http1.ResponseHead | None = None
        self._fast_start = 0  # where the response body starts in the buffer
        self._fast_end = 0  # and ends
        # One timer per connection for the fast exchanges' response deadlines, moved lazily.
        self._fast_timer: asyncio.TimerHandle | None = None
        # What the fast path began and the task is to finish.
        self._handoff: _Handoff | None = None
        self._peer = ""
        self._task: asyncio.Task[None] | None = None
        self._backend: BackendConnection | None = None
        # Why the request body could not be relayed (set by the body pump).
        self._pump_failure: str | None = None

    # -- connection --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        loop = self._loop = asyncio.get_running_loop()
        self._accepted = loop.time()
        self._server._connection_made(self)
        self._task = loop.create_task(self._run())

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)  # wakes: a fast exchange is handed over
        backend = self._backend
        if backend is not None:
            backend.abort()
        timer = self._fast_timer
        if timer is not None:
            self._fast_timer = None
            timer.cancel()
        self._server._connection_lost(self)

    def data_received(self, data: bytes) -> None:
        if self._raw:
            super().data_received(data)
            return
        reader = self._reader
        requests = self._requests
        fast = self._parked and not requests and self._fast is None
        rest = reader.feed(data)
        if reader.broken:
            self._pause_reading()
            self.wake()
            return
        if reader.upgraded:
            self._raw = True
            if rest:
                Channel.data_received(self, rest)
        try:
            handled = fast and len(requests) == 1 and self._try_fast(requests[0])
        except Exception:
            log.exception("router.connection_failed", client=self._peer)
            self.abort()  # the task records what it can
            return
        if not handled:
            self.wake()
        self._flow()

    def wake(self) -> None:
        """Wake the task; a fast exchange in progress is handed over to it first."""
        self._parked = False
        if self._fast is not None:
            self._handover()
        Channel.wake(self)

    def eof_received(self) -> bool | None:
        # A client that stops sending has gone (as for Go's net/http and nginx): what it asked
        # for is abandoned, the backend connection closed. Half-closing clients get nothing.
        self.eof = True
        self.wake()
        return None

    def _flow(self) -> None:
        """Stop reading while a body piles up or a pipelined request waits; resume after."""
        reader = self._reader
        parsing = reader.parsing
        backlog = len(reader.requests) > 1 or (
            parsing is not None and parsing.body_buffered > HIGH_WATER
        )
        if backlog or reader.broken:
            if not self._read_paused:
                self._pause_reading()
        elif self._read_paused and not self._raw:
            self._resume_reading()

    # -- serving -------------------------------------------------------------------------------

    def shutdown_if_idle(self) -> None:
        if self._idle:
            self.wake()

    async def _run(self) -> None:
        try:
            while True:
                request = await self._next_request()
                if request is None:
                    break
                try:
                    keep = await self._serve(request)
                finally:
                    self._requests.popleft()
                    self._server._record(request, self._peer)
                    self._last_done = asyncio.get_running_loop().time()
                if not keep or self.closed or self._server.closing:
                    break
                self._flow()
        except Exception:
            log.exception("router.connection_failed", client=self._peer)
        finally:
            self._idle = False
            self._parked = False
            if self._fast is not None:
                self._handover()
            handoff = self._handoff
            if handoff is not None:  # cancelled (stop) before it was served
                self._handoff = None
                self._server.balancer.release(handoff.state)
                if handoff.connection is not None:
                    handoff.connection.abort()
            backend = self._backend
            if backend is not None:
                backend.abort()
            self.close()

    async def _next_request(self) -> Request | None:
        loop = asyncio.get_running_loop()
        options = self._options
        server = self._server
        if not self._requests:
            self._idle = True
            try:
                while not self._requests:
                    if self.eof or server.closing:
                        return None
                    # Before the first request, the header timeout from the accept; after
                    # one (served here or by the fast path), the idle timeout from its end.
                    if self._last_done < 0:
                        deadline = self._accepted + options.client_header_timeout
                    else:
                        deadline = self._last_done + options.client_idle_timeout
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return None
                    self._parked = True
                    await self.wait(remaining)
                    if self._fast is not None:  # the wait timed out mid fast exchange
                        self.wake()
            finally:
                self._idle = False
                self._parked = False
        request = self._requests[0]
        if self._handoff is not None:
            return request
        if self._last_done < 0:
            deadline = self._accepted + options.client_header_timeout
        else:
            deadline = loop.time() + options.client_header_timeout
        while not (request.head_done or request.error):
            if self.eof:
                return None
            remaining = deadline - loop.time()
            if (remaining <= 0 or not await self.wait(remaining)) and not (
                request.head_done or request.error
            ):
                self._reader.fail(_REQUEST_TIMEOUT)
                break
        return request

    def _answer(self, request: Request, answer: Answer, close: bool = False) -> bool:
        """Write one of the router's own answers; whether the connection stays open."""
        status, error, body = answer
        close = (
            close
            or not request.keep_alive
            or not request.complete
            or request.websocket
            or self._reader.broken
            or self.eof
            or self._server.closing
        )
        if request.request_id is None:
            request.request_id = http1.new_request_id()
        head_only = request.method == b"HEAD"
        head, encoded = http1.router_answer(
            status,
            body,
            error=error,
            request_id=request.request_id,
            close=close,
            http10_keep_alive=not request.http11,
        )
        if head_only:
            self.write(head)
        else:
            self.writelines([head, encoded])
            request.bytes_out = len(encoded)
        request.status = status
        request.problem = error
        self._server.metrics.router_answers.labels(error).inc()
        return not close

    def _dispatch(self, request: Request) -> Route | bool:
        """The route to proxy `request` to; or, when the router answers it itself, whether
        the connection stays open."""
        server = self._server
        if request.error is not None:
            return self._answer(request, request.error, close=True)
        if not server.ready:
            return self._answer(request, _NOT_READY)
        try:
            route = server.resolve(request.host, request.path)
        except Exception:
            log.exception("router.resolve_failed", host=request.host)
            return self._answer(request, _LOOKUP)
        if route is None:
            body = _UNKNOWN_ROUTE.format(host=request.host)
            return self._answer(request, (404, "unknown_route", body))
        if not route.endpoints:
            body = _NO_ENDPOINTS.format(host=request.host)
            return self._answer(request, (503, "no_endpoints", body))
        return route

    async def _serve(self, request: Request) -> bool:
        handoff = self._handoff
        if handoff is not None:
            self._handoff = None
            return await self._proxy(request, handoff.route, handoff)
        route = self._dispatch(request)
        if isinstance(route, bool):
            return route
        return await self._proxy(request, route)

    async def _proxy(self, request: Request, route: Route, handoff: _Handoff | None = None) -> bool:
        server = self._server
        balancer = server.balancer
        tried: set[str] = set()
        while True:
            sent: _Handoff | None = None
            if handoff is not None:
                endpoint, state = handoff.endpoint, handoff.state
                if handoff.connection is not None:
                    sent = handoff
                handoff = None
            else:
                picked = balancer.pick(route, tried)
                if picked is None:
                    return self._answer(request, _FAILED if tried else _LIMIT)
                endpoint = picked
                state = balancer.acquire(endpoint)
            try:
                if sent is not None and sent.connection is not None:
                    return await self._exchange(request, endpoint, sent.connection, True, sent)
                connection = server.pool.take(endpoint.address)
                reused = connection is not None
                if connection is None:
                    connection = await server.connect(endpoint)
                    if connection is None:
                        tried.add(endpoint.address)
                        continue
                request.endpoint = endpoint
                if self.closed:
                    server.pool.put(connection)
                    request.status, request.problem = 499, "client_closed"
                    return False
                return await self._exchange(request, endpoint, connection, reused)
            finally:
                balancer.release(state)

    # -- the fast path -------------------------------------------------------------------------

    def _try_fast(self, request: Request) -> bool:
        """Serve `request` from this callback if it is the common case; False: the task serves
        it (with the endpoint chosen here, if one was: `_handoff`)."""
        if (
            not request.complete
            or request.websocket
            or request.expect_continue
            or request.body_buffered > _FAST_MAX
            or self._write_paused
            or self.eof
        ):
            return False
        server = self._server
        if server.closing:
            return False
        route = self._dispatch(request)
        if isinstance(route, bool):
            self._finish(request, route)
            return True
        balancer = server.balancer
        endpoint = balancer.pick(route)
        if endpoint is None:
            self._finish(request, self._answer(request, _LIMIT))
            return True
        state = balancer.acquire(endpoint)
        connection = server.pool.take(state.address)
        if connection is None:
            self._handoff = _Handoff(route, endpoint, state)  # the task connects
            return False
        request.endpoint = endpoint
        head = render_request_head(request, self._peer, server.scheme)
        if request.body or request.chunked:
            parts = self._take_body(request)
            if request.chunked:
                parts.append(http1.LAST_CHUNK)
            connection.writelines([head, *parts])
        else:
            connection.write(head)
        loop = self._loop
        assert loop is not None
        deadline = loop.time() + self._options.backend_response_timeout
        self._fast = request
        self._fast_plan = _Handoff(route, endpoint, state, connection, head, deadline)
        self._backend = connection
        connection.receiver = self
        if self._fast_timer is None:
            self._fast_timer = loop.call_at(deadline, self._fast_timeout)
        return True

    def _fast_timeout(self) -> None:
        self._fast_timer = None
        plan = self._fast_plan
        if self._fast is None or plan is None:
            return
        loop = self._loop
        assert loop is not None
        if loop.time() < plan.deadline:
            self._fast_timer = loop.call_at(plan.deadline, self._fast_timeout)
        else:
            self.wake()  # the task answers 504

    def backend_data(self, data: bytes) -> None:
        """Bytes from the backend connection of the fast exchange in progress."""
        request = self._fast
        assert request is not None
        buffer = self._fast_buffer + data if self._fast_buffer else data
        self._fast_buffer = buffer
        response = self._fast_response
        if response is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > self._options.max_response_header_bytes or b"\n\n" in buffer:
                    self.wake()  # the task answers 502
                return
            try:
                response = http1.parse_response_head(buffer[:end])
            except ProtocolError:
                self.wake()  # the task answers 502
                return
            status = response.status
            kind = response.body_kind(request.method)
            start = end + 4
            if status < 200:
                total = _FAST_MAX + 1  # 1xx, 101: for the task
            elif kind is BodyKind.LENGTH:
                total = start + (response.content_length or 0)
            elif kind is BodyKind.NONE:
                total = start
            else:
                total = _FAST_MAX + 1  # chunked or until close: streamed by the task
            if total > _FAST_MAX:
                self.wake()
                return
            self._fast_response = response
            self._fast_start = start
            self._fast_end = total
        if len(buffer) >= self._fast_end:
            self._fast_respond(request, response, buffer)

    def _fast_respond(self, request: Request, response: http1.ResponseHead, buffer: bytes) -> None:
        """The whole response is in `buffer`: relay it in one write, end the exchange."""
        server = self._server
        plan = self._fast_plan
        assert plan is not None and plan.connection is not None
        connection = plan.connection
        start, end = self._fast_start, self._fast_end
        status = response.status
        keep = (
            request.keep_alive and not self._reader.broken and not self.eof and not server.closing
        )
        # As `_respond` renders it: the fields as received, then the proxy's own.
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, response.reason), *response.rendered]
        if end > start or (response.content_length is not None and status != 204):
            parts.append(b"Content-Length: %d\r\n" % (response.content_length or 0))
        if keep:
            if not request.http11:
                parts.append(b"Connection: keep-alive\r\n")
        else:
            parts.append(b"Connection: close\r\n")
        parts += (b"X-Request-Id: ", (request.request_id or "").encode("ascii"), b"\r\n\r\n")
        if end > start:
            parts.append(buffer[start:end])
            request.bytes_out += end - start
        request.status = status
        self.write(b"".join(parts))
        self._fast = None
        self._fast_plan = None
        self._fast_buffer = b""
        self._fast_response = None
        self._backend = None
        connection.receiver = None
        server.balancer.release(plan.state)
        if response.keep_alive and len(buffer) == end and not server.closing:
            server.pool.put(connection)
        else:
            connection.close()
        self._finish(request, keep)

    def _handover(self) -> None:
        """Give the fast exchange in progress to the task: what the backend sent goes back
        into the connection's queue, and `_serve` carries on from there."""
        plan = self._fast_plan
        assert plan is not None and plan.connection is not None
        connection = plan.connection
        self._fast = None
        self._fast_plan = None
        connection.receiver = None
        connection.unread(self._fast_buffer)
        self._fast_buffer = b""
        self._fast_response = None
        self._handoff = plan

    def _finish(self, request: Request, keep: bool) -> None:
        """After the fast path answered `request`: record it; close unless kept."""
        self._requests.popleft()
        self._server._record(request, self._peer)
        loop = self._loop
        assert loop is not None
        self._last_done = loop.time()
        if not keep or self.closed or self._server.closing:
            self.close()

    def _take_body(self, request: Request) -> list[bytes]:
        body = request.body
        parts: list[bytes] = []
        if request.chunked:
            while body:
                parts += http1.chunk(body.popleft())
        else:
            parts += body
            body.clear()
        request.body_buffered = 0
        self._flow()
        return parts

    async def _exchange(
        self,
        request: Request,
        endpoint: Endpoint,
        connection: BackendConnection,
        reused: bool,
        sent: _Handoff | None = None,
    ) -> bool:
        """Send the request (unless the fast path `sent` it) and relay the response."""
        server = self._server
        self._pump_failure = None
        self._backend = connection
        pump: asyncio.Task[None] | None = None
        deadline: float | None = None
        try:
            if sent is not None:
                head, deadline = sent.head, sent.deadline
            else:
                head = render_request_head(request, self._peer, self._server.scheme)
                if request.complete:
                    parts = self._take_body(request)
                    if request.chunked:
                        parts.append(http1.LAST_CHUNK)
                    connection.writelines([head, *parts])
                else:
                    connection.write(head)
                    pump = asyncio.get_running_loop().create_task(self._pump(request, connection))
            try:
                return await self._relay(request, connection, pump, reused, deadline)
            except _Stale:
                connection.abort()
            # The pooled connection had been closed by the backend: once more, on a new one.
            server.metrics.backend_errors.labels("stale_connection").inc()
            fresh = await server.connect(endpoint)
            if fresh is None:
                return self._answer(request, _FAILED)
            self._backend = connection = fresh
            connection.write(head)
            return await self._relay(request, connection, None, False)
        finally:
            self._backend = None
            if pump is not None and not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump

    async def _pump(self, request: Request, connection: BackendConnection) -> None:
        """Send the rest of the request body as it arrives; on failure abort the backend
        connection, so the relay stops waiting for it."""
        options = self._options
        try:
            while True:
                if request.body:
                    connection.writelines(self._take_body(request))
                    if connection.write_paused:
                        async with asyncio.timeout(options.backend_response_timeout):
                            await connection.drain()
                    continue
                if request.complete:
                    if request.chunked:
                        connection.write(http1.LAST_CHUNK)
                    return
                if request.error is not None:
                    self._pump_failure = "client_error"
                elif self.eof:
                    self._pump_failure = "client_closed"
                elif not await self.wait(options.client_idle_timeout) and not (
                    request.body or request.complete or request.error or self.eof
                ):
                    self._pump_failure = "client_timeout"
                if self._pump_failure is not None:
                    connection.abort()
                    return
        except TimeoutError:
            self._pump_failure = "backend_timeout"
            connection.abort()
        except ConnectionResetError:
            pass  # the backend went away; the relay sees it
        finally:
            connection.wake()

    def _pump_problem(self, request: Request) -> bool:
        """After the backend connection ended early: answer for a failed body pump, if it
        failed. Always closes the client connection."""
        failure = self._pump_failure
        if failure == "client_error" and request.error is not None:
            self._answer(request, request.error, close=True)
        elif failure == "client_timeout":
            self._answer(request, _REQUEST_TIMEOUT, close=True)
        elif failure == "backend_timeout":
            self._server.metrics.backend_errors.labels("timeout").inc()
            self._answer(request, _TIMEOUT, close=True)
        else:
            request.status, request.problem = 499, "client_closed"
        return False

    def _backend_failed(
        self,
        request: Request,
        connection: BackendConnection,
        kind: str,
        answer: Answer,
    ) -> bool:
        connection.abort()
        self._server.metrics.backend_errors.labels(kind).inc()
        if self.closed:
            request.status, request.problem = 499, "client_closed"
            return False
        return self._answer(request, answer)

    async def _relay(
        self,
        request: Request,
        connection: BackendConnection,
        pump: asyncio.Task[None] | None,
        reused: bool,
        deadline: float | None = None,
    ) -> bool:
        """Read the response head (skipping 1xx), then stream the response to the client."""
        options = self._options
        loop = asyncio.get_running_loop()
        timeout = options.backend_response_timeout
        if deadline is None and pump is None:
            deadline = loop.time() + timeout
        buffer = b""
        while True:
            data = connection.take()
            if data is None:
                if self.closed:
                    connection.abort()
                    request.status, request.problem = 499, "client_closed"
                    return False
                if deadline is None and (pump is None or pump.done()):
                    deadline = loop.time() + timeout
                if deadline is None:
                    await connection.wait()  # woken when the pump is done
                    continue
                remaining = deadline - loop.time()
                if remaining > 0 and await connection.wait(remaining):
                    continue
                if connection.has_data() or connection.eof:
                    continue
                return self._backend_failed(request, connection, "timeout", _TIMEOUT)
            if not data:
                if self._pump_failure is not None or self.closed:
                    return self._pump_problem(request)
                if (
                    reused
                    and not buffer
                    and pump is None
                    and not request.body_buffered
                    and request.method in _RETRYABLE
                    and not request.bytes_in
                ):
                    raise _Stale
                return self._backend_failed(request, connection, "closed", _FAILED)
            start = max(0, len(buffer) - 3)
            buffer = buffer + data if buffer else data
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                if len(buffer) > options.max_response_header_bytes or b"\n\n" in buffer:
                    return self._backend_failed(request, connection, "protocol", _FAILED)
                continue
            try:
                head = http1.parse_response_head(buffer[:end])
            except ProtocolError:
                return self._backend_failed(request, connection, "protocol", _FAILED)
            connection.unread(buffer[end + 4 :])
            buffer = b""
            if head.status >= 200 or head.status == 101:
                break
            if head.status == 100 and request.expect_continue and not request.continued:
                request.continued = True
                self.write(_CONTINUE)
        if head.status == 101:
            if not request.websocket or (head.upgrade or b"").lower() != b"websocket":
                return self._backend_failed(request, connection, "protocol", _FAILED)
            return await self._tunnel(request, connection, head)
        return await self._respond(request, connection, pump, head)

    async def _respond(
        self,
        request: Request,
        connection: BackendConnection,
        pump: asyncio.Task[None] | None,
        head: http1.ResponseHead,
    ) -> bool:
        server = self._server
        kind = head.body_kind(request.method)
        keep = (
            request.keep_alive
            and request.complete
            and not request.websocket
            and not self._reader.broken
            and not self.eof
            and not server.closing
        )
        fields = head.fields
        chunked = False
        if kind is BodyKind.LENGTH or (
            kind is BodyKind.NONE
            and head.content_length is not None
            and head.status >= 200
            and head.status != 204
        ):
            fields.append((b"Content-Length", b"%d" % (head.content_length or 0)))
        elif kind is BodyKind.CHUNKED or kind is BodyKind.CLOSE:
            if request.http11:
                chunked = True
                fields.append((b"Transfer-Encoding", b"chunked"))
            else:
                keep = False
        if keep:
            if not request.http11:
                fields.append((b"Connection", b"keep-alive"))
        else:
            fields.append((b"Connection", b"close"))
        fields.append((b"X-Request-Id", (request.request_id or "").encode("ascii")))
        request.status = head.status
        self.write(http1.render_head(b"HTTP/1.1 %d %s" % (head.status, head.reason), fields))
        reusable = head.keep_alive and kind is not BodyKind.CLOSE
        if kind is not BodyKind.NONE:
            finished = await self._stream_body(request, connection, head, kind, chunked)
            if not finished:
                return False
        elif connection.has_data():
            reusable = False
        if pump is not None and not pump.done():
            # The response is complete before the request body: close both.
            reusable = keep = False
        if reusable and not connection.has_data() and not server.closing:
            server.pool.put(connection)
        else:
            connection.close()
        return keep

    async def _stream_body(
        self,
        request: Request,
        connection: BackendConnection,
        head: http1.ResponseHead,
        kind: BodyKind,
        chunked: bool,
    ) -> bool:
        """Copy the response body; False when it could not be completed (the client
        connection is then closed, which is all the client can be told)."""
        idle = self._options.client_idle_timeout
        remaining = head.content_length or 0
        if kind is BodyKind.LENGTH and remaining == 0:
            return True
        decoder = http1.ChunkedDecoder() if kind is BodyKind.CHUNKED else None
        sent = 0
        try:
            while True:
                data = connection.take()
                if data is None:
                    if self.closed:
                        raise ConnectionResetError
                    await connection.wait()
                    continue
                if not data:
                    if self.closed:
                        raise ConnectionResetError  # and so the backend connection was aborted
                    if kind is BodyKind.CLOSE:
                        if chunked:
                            self.write(http1.LAST_CHUNK)
                        return True
                    self._server.metrics.backend_errors.labels("truncated").inc()
                    request.problem = "backend_closed_mid_response"
                    return False
                if kind is BodyKind.LENGTH:
                    if len(data) >= remaining:
                        connection.unread(data[remaining:])
                        data = data[:remaining]
                    remaining -= len(data)
                    self.write(data)
                    sent += len(data)
                    if remaining == 0:
                        return True
                elif decoder is not None:
                    pieces = decoder.feed(data)
                    for piece in pieces:
                        sent += len(piece)
                        if chunked:
                            self.writelines(http1.chunk(piece))
                        else:
                            self.write(piece)
                    if decoder.done:
                        connection.unread(decoder.rest)
                        if chunked:
                            self.write(http1.LAST_CHUNK)
                        return True
                else:
                    sent += len(data)
                    if chunked:
                        self.writelines(http1.chunk(data))
                    else:
                        self.write(data)
                if self.write_paused:
                    async with asyncio.timeout(idle):
                        await self.drain()
                elif self.closed:
                    raise ConnectionResetError
        except ProtocolError:
            self._server.metrics.backend_errors.labels("protocol").inc()
            request.problem = "invalid_response_body"
            return False
        except (ConnectionResetError, TimeoutError):
            request.problem = "client_closed"
            return False
        finally:
            request.bytes_out += sent
            if request.problem is not None:
                connection.abort()

    async def _tunnel(
        self, request: Request, connection: BackendConnection, head: http1.ResponseHead
    ) -> bool:
        """Relay an upgraded (WebSocket) connection both ways until either side closes."""
        server = self._server
        assert head.upgrade is not None
        fields = [
            *head.fields,
            (b"Connection", b"Upgrade"),
            (b"Upgrade", head.upgrade),
            (b"X-Request-Id", (request.request_id or "").encode("ascii")),
        ]
        request.status = 101
        self.write(http1.render_head(b"HTTP/1.1 101 %s" % head.reason, fields))
        server.metrics.websockets.inc()
        upstream = asyncio.get_running_loop().create_task(self._splice(self, connection, request))
        try:
            await self._splice(connection, self, request)
        finally:
            connection.close()
            self.close()
            await upstream
            server.metrics.websockets.dec()
        return False

    @staticmethod
    async def _splice(source: Channel, target: Channel, request: Request) -> None:
        upstream = isinstance(target, BackendConnection)
        try:
            while True:
                data = source.take()
                if data is None:
                    await source.wait()
                    continue
                if not data:
                    break
                target.write(data)
                if upstream:
                    request.bytes_in += len(data)
                else:
                    request.bytes_out += len(data)
                if target.write_paused:
                    await target.drain()
                elif target.closed:
                    break
        except ConnectionResetError:
            pass
        finally:
            source.close()
            target.close()


class ProxyServer:
    """The data plane: `start` listens, `stop` drains. `ready` stays False (every request gets
    503 "router not ready") until whoever feeds `resolve` has heard a full registration round."""

    def __init__(
        self,
        resolve: Resolver,
        *,
        access: AccessSink | None = None,
        options: ProxyOptions = ProxyOptions(),
        ready: bool = False,
    ) -> None:
        self.resolve = resolve
        self.options = options
        self._access = access
        self._ready = ready
        self.closing = False
        self.scheme = options.scheme.encode("ascii")
        self.metrics = ProxyMetrics()
        self.balancer = Balancer(
            max_connections=options.max_connections_per_endpoint,
            ineligible_seconds=options.ineligible_seconds,
            clock=options.clock,
        )
        self.pool = ConnectionPool(
            max_idle=options.max_idle_connections_per_endpoint,
            idle_timeout=options.backend_idle_timeout,
            clock=options.clock,
        )
        self._server: asyncio.Server | None = None
        self._connections: set[_ClientConnection] = set()
        self._drained: asyncio.Event | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._backend_errors = self.metrics.backend_errors
        self._sink_failures = 0
        self._sink_logged_at = -60.0

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    @property
    def ready(self) -> bool:
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value

    @property
    def connections(self) -> int:
        """Client connections open."""
        return len(self._connections)

    async def start(self, host: str, port: int) -> int:
        """Listen on `host`:`port` (0: any free port); the port bound."""
        if self._server is not None:
            raise RuntimeError("the proxy is already started")
        loop = asyncio.get_running_loop()
        self.closing = False
        self._server = await loop.create_server(
            lambda: _ClientConnection(self), host, port, reuse_address=True, backlog=1024
        )
        self._sweeper = loop.create_task(self._sweep())
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        """Stop accepting, close idle connections, give requests in flight `drain_seconds`,
        then close everything."""
        server = self._server
        if server is None:
            return
        self._server = None
        self.closing = True
        server.close()
        self.pool.close_all()
        for connection in list(self._connections):
            connection.shutdown_if_idle()
        if self._connections:
            self._drained = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.options.drain_seconds):
                    await self._drained.wait()
        tasks = []
        for connection in list(self._connections):
            connection.abort()
            if connection._task is not None:
                tasks.append(connection._task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        self.pool.close_all()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await server.wait_closed()

    async def _sweep(self) -> None:
        interval = max(0.05, min(5.0, self.options.backend_idle_timeout / 2))
        while True:
            await asyncio.sleep(interval)
            self.pool.sweep()
            self.balancer.prune()

    async def connect(self, endpoint: Endpoint) -> BackendConnection | None:
        """A new connection to `endpoint`; None (and the endpoint ineligible) when it could not
        be made."""
        try:
            connection = await open_connection(
                endpoint.host,
                endpoint.port,
                endpoint.address,
                within=self.options.backend_connect_timeout,
                on_lost=self._backend_lost,
            )
        except (OSError, TimeoutError):
            self.balancer.mark_failed(endpoint)
            self._backend_errors.labels("connect").inc()
            return None
        self.metrics.backend_connections.inc()
        return connection

    def _backend_lost(self, _channel: Channel) -> None:
        self.metrics.backend_connections.dec()

    def _connection_made(self, connection: _ClientConnection) -> None:
        self._connections.add(connection)
        self.metrics.open_connections.inc()

    def _connection_lost(self, connection: _ClientConnection) -> None:
        self._connections.discard(connection)
        self.metrics.open_connections.dec()
        if not self._connections and self._drained is not None:
            self._drained.set()

    def _record(self, request: Request, client: str) -> None:
        if request.status == 0:
            return
        options = self.options
        duration = max(0.0, options.clock() - request.started)
        self.metrics.request(request.status, duration)
        access = self._access
        if access is None:
            return
        try:
            access(
                AccessRecord(
                    request_id=request.request_id or "",
                    client=client,
                    method=request.method.decode("latin-1"),
                    target=request.target.decode("latin-1"),
                    host=request.host,
                    status=request.status,
                    bytes_received=request.bytes_in,
                    bytes_sent=request.bytes_out,
                    started_at=request.started_wall,
                    duration_seconds=duration,
                    user_agent=request.user_agent.decode("latin-1"),
                    referer=request.referer.decode("latin-1"),
                    endpoint=request.endpoint,
                    error=request.problem,
                )
            )
        except Exception:
            # Swallowed; logged at most once a minute (a broken sink fails for every request).
            self._sink_failures += 1
            now = time.monotonic()
            if now - self._sink_logged_at >= 60.0:
                self._sink_logged_at = now
                log.exception("router.access_sink_failed", failures=self._sink_failures)
