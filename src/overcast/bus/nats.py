"""The bus on NATS (nats-py against nats-server), for more than one process.

Semantics, beyond the `Bus` protocol (the conformance suite holds MemoryBus to the same):

- Initial connect: nats-py retries every `reconnect_wait` seconds; `connect()` gives up after
  `connect_timeout` seconds (default: max(request_timeout, 2 s, 2 * reconnect_wait)) and raises
  BusError naming the server with its credentials masked. Composition roots decide whether to
  retry or exit; nothing keeps trying in the background.
- After a connection was made it is never given up while `max_reconnect_attempts` is -1: on a
  drop listeners hear DISCONNECTED, nats-py reconnects every `reconnect_wait` seconds, replays
  the subscriptions, sends what was published meanwhile (its pending buffer, `pending_bytes`;
  when that is full `publish()` raises BusError), and listeners hear RECONNECTED. A request
  sent during the outage is buffered too and raises BusTimeout unless answered in time.
  Messages other clients publish while this one is away are lost to it (NATS at most once).
  If a finite number of attempts runs out, listeners hear CLOSED and the bus raises BusError.
- Each subscription's messages are handled one at a time, in order, by its own task (shared
  `SubscriptionWorker`): nats-py's callback only decodes and queues, so a slow handler never
  holds up other subscriptions and a handler may unsubscribe itself. A handler's exception is
  logged and the subscription lives on; a requester whose responder raised gets no reply and
  times out. A message that is not a JSON object is logged (subject only) and dropped.
- `close()` drains: publish/request/subscribe raise BusClosed from its first moment; every
  subscription is drained at the server (UNSUB, a round trip, nats-py's queue emptied), queued
  messages are handled for up to `drain_timeout` seconds (handlers may still `respond()`),
  requests still waiting get BusClosed, then the connection is flushed and closed.
- The server URL is only ever logged or reported with its user info masked.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats.errors
from nats.aio.client import Client

from overcast.bus.base import (
    BusClosed,
    BusError,
    BusState,
    BusTimeout,
    Handler,
    Message,
    NoResponders,
    StateListener,
    StateListeners,
    SubscriptionWorker,
    build_headers,
    decode_payload,
    drain_workers,
    encode_payload,
    validate_queue,
    validate_subject,
)
from overcast.core.logging import get_logger

_log = get_logger("overcast.bus.nats")

DEFAULT_PENDING_BYTES = 8 * 1024 * 1024


def mask_url(url: str) -> str:
    """The URL with any user info replaced by `***` (for logs and error messages)."""
    if "@" not in url:
        return url
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "no answer"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class NatsSubscription:
    def __init__(self, bus: NatsBus, subject: str, queue: str | None, handler: Handler) -> None:
        self.subject = subject
        self.queue = queue
        self._bus = bus
        self.worker = SubscriptionWorker(subject, handler, _log)
        self.nats_subscription: Any = None

    async def deliver(self, msg: Any) -> None:
        """nats-py's callback: decode and queue, never block, never raise."""
        try:
            data = decode_payload(msg.data)
        except ValueError:
            _log.warning("bus.bad_payload", subject=msg.subject)
            return
        self.worker.offer(
            Message(
                subject=msg.subject,
                data=data,
                headers=dict(msg.headers or {}),
                reply=msg.reply or None,
            )
        )

    async def unsubscribe(self) -> None:
        """Stop delivery at once; queued messages are dropped, a running handler finishes
        (so a handler may unsubscribe itself). Idempotent."""
        self.worker.stop(discard=True)
        self._bus._forget(self)
        subscription, self.nats_subscription = self.nats_subscription, None
        if subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()

    async def stop_intake(self) -> None:
        """For close(): UNSUB at the server, and hand over what nats-py still holds."""
        subscription, self.nats_subscription = self.nats_subscription, None
        if subscription is None:
            return
        with contextlib.suppress(nats.errors.Error):
            if self._bus.connected_client:
                await subscription.drain()
            else:
                await subscription.unsubscribe()


class NatsBus:
    """The `Bus` protocol on nats-py. See the module docstring for the semantics."""

    def __init__(
        self,
        url: str,
        *,
        request_timeout: float = 5.0,
        max_reconnect_attempts: int = -1,
        reconnect_wait: float = 0.5,
        name: str = "overcast",
        connect_timeout: float | None = None,
        drain_timeout: float = 5.0,
        pending_bytes: int = DEFAULT_PENDING_BYTES,
    ) -> None:
        self._servers = [server.strip() for server in url.split(",") if server.strip()]
        if not self._servers:
            raise ValueError("a NATS URL is required")
        self.server = ",".join(mask_url(server) for server in self._servers)
        self.name = name
        self._request_timeout = request_timeout
        self._max_reconnect_attempts = max_reconnect_attempts
        self._reconnect_wait = reconnect_wait
        self._connect_timeout = (
            connect_timeout
            if connect_timeout is not None
            else max(request_timeout, 2.0, 2 * reconnect_wait)
        )
        self._drain_timeout = drain_timeout
        self._pending_bytes = pending_bytes
        self._client: Any = None
        self._connect_lock = asyncio.Lock()
        self._closing = False
        self._closed = asyncio.Event()
        self._subscriptions: list[NatsSubscription] = []
        self._requests: set[asyncio.Task[Any]] = set()
        self._listeners = StateListeners(_log)
        self._last_error: str | None = None

    @property
    def connected(self) -> bool:
        return not self._closing and self.connected_client

    @property
    def request_timeout(self) -> float:
        """Seconds a request waits for its reply when the caller gives no timeout."""
        return self._request_timeout

    @property
    def connected_client(self) -> bool:
        """The NATS connection is up (also while draining)."""
        return self._client is not None and bool(self._client.is_connected)

    async def connect(self) -> None:
        self._check_not_closed()
        async with self._connect_lock:
            if self._client is not None:
                return
            # nats-py annotates its timeouts as int but takes seconds as float.
            client: Any = Client()
            try:
                await asyncio.wait_for(
                    client.connect(
                        servers=self._servers,
                        name=self.name,
                        allow_reconnect=True,
                        max_reconnect_attempts=self._max_reconnect_attempts,
                        reconnect_time_wait=self._reconnect_wait,
                        connect_timeout=max(1.0, min(self._connect_timeout, 5.0)),
                        pending_size=self._pending_bytes,
                        flush_timeout=self._request_timeout,
                        ping_interval=20,
                        max_outstanding_pings=3,
                        drain_timeout=self._drain_timeout,
                        error_cb=self._on_error,
                        disconnected_cb=self._on_disconnected,
                        reconnected_cb=self._on_reconnected,
                        closed_cb=self._on_closed,
                    ),
                    self._connect_timeout,
                )
            except BaseException as exc:
                if isinstance(exc, TimeoutError):
                    detail = f"within {self._connect_timeout:g}s ({_describe(client.last_error)})"
                else:
                    detail = f"({_describe(exc)})"
                with contextlib.suppress(Exception):
                    await client.close()
                if not isinstance(exc, Exception):
                    raise
                raise BusError(f"cannot connect to NATS at {self.server} {detail}") from exc
            self._client = client
            _log.info("bus.connected", kind="nats", server=self.server, name=self.name)

    async def publish(
        self, subject: str, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> None:
        client = self._usable_client()
        validate_subject(subject)
        payload = encode_payload(data)
        try:
            await client.publish(subject, payload, headers=build_headers(headers))
        except nats.errors.Error as exc:
            raise self._translate(exc) from exc

    async def subscribe(
        self, subject: str, handler: Handler, *, queue: str | None = None
    ) -> NatsSubscription:
        client = self._usable_client()
        subscription = NatsSubscription(
            self, validate_subject(subject, pattern=True), validate_queue(queue), handler
        )
        try:
            subscription.nats_subscription = await client.subscribe(
                subject, queue=queue or "", cb=subscription.deliver
            )
        except nats.errors.Error as exc:
            subscription.worker.stop(discard=True)
            raise self._translate(exc) from exc
        self._subscriptions.append(subscription)
        return subscription

    async def request(
        self,
        subject: str,
        data: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the Bus protocol's signature
        headers: dict[str, str] | None = None,
    ) -> Message:
        client = self._usable_client()
        wait = self._request_timeout if timeout is None else timeout
        if wait <= 0:
            raise ValueError("a request timeout must be positive")
        validate_subject(subject)
        payload = encode_payload(data)
        task: asyncio.Task[Any] = asyncio.ensure_future(
            client.request(subject, payload, timeout=wait, headers=build_headers(headers))
        )
        self._requests.add(task)
        try:
            reply = await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closing and task.cancelled() and current and not current.cancelling():
                raise BusClosed("the bus was closed while a request waited") from None
            raise
        except nats.errors.NoRespondersError:
            raise NoResponders(f"no responders on {subject}") from None
        except nats.errors.TimeoutError:
            raise BusTimeout(f"no reply on {subject} within {wait:g}s") from None
        except nats.errors.Error as exc:
            raise self._translate(exc) from exc
        finally:
            self._requests.discard(task)
        try:
            return Message(
                subject=reply.subject,
                data=decode_payload(reply.data),
                headers=dict(reply.headers or {}),
            )
        except ValueError:
            raise BusError(f"the reply on {subject} is not a JSON object") from None

    async def respond(
        self, request: Message, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> None:
        if request.reply is None:
            return
        # Allowed while draining, so in-flight handlers can still answer.
        if self._closed.is_set():
            raise BusClosed("the bus is closed")
        client = self._client
        if client is None:
            raise BusError("the bus is not connected; call connect() first")
        payload = encode_payload(data)
        try:
            await client.publish(request.reply, payload, headers=build_headers(headers))
        except nats.errors.Error as exc:
            raise self._translate(exc) from exc

    def add_state_listener(self, listener: StateListener) -> None:
        self._listeners.add(listener)

    async def close(self) -> None:
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            subscriptions, self._subscriptions = self._subscriptions, []
            if subscriptions:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.gather(*(s.stop_intake() for s in subscriptions)),
                        self._drain_timeout,
                    )
            await drain_workers([s.worker for s in subscriptions], self._drain_timeout, _log)
            for task in list(self._requests):
                task.cancel()
            client = self._client
            if client is not None and not client.is_closed:
                if client.is_connected:
                    with contextlib.suppress(nats.errors.Error, TimeoutError):
                        await client.flush(timeout=max(1, round(self._drain_timeout)))
                with contextlib.suppress(Exception):
                    await client.close()
        finally:
            self._closed.set()
            self._listeners.notify(BusState.CLOSED)
            _log.info("bus.closed", kind="nats", server=self.server, name=self.name)

    # --- nats-py callbacks ---------------------------------------------------------------------

    async def _on_error(self, error: Exception) -> None:
        # A server that stays away fails every reconnect attempt the same way: say it once.
        description = _describe(error)
        if description == self._last_error:
            _log.debug("bus.nats_error", server=self.server, error=description)
            return
        self._last_error = description
        _log.warning("bus.nats_error", server=self.server, error=description)

    async def _on_disconnected(self) -> None:
        if self._closing or self._client is None:
            return
        _log.warning("bus.disconnected", kind="nats", server=self.server, name=self.name)
        self._listeners.notify(BusState.DISCONNECTED)

    async def _on_reconnected(self) -> None:
        if self._closing:
            return
        self._last_error = None
        _log.info("bus.reconnected", kind="nats", server=self.server, name=self.name)
        self._listeners.notify(BusState.RECONNECTED)

    async def _on_closed(self) -> None:
        if self._closing or self._client is None:
            return
        _log.error("bus.connection_lost", kind="nats", server=self.server, name=self.name)
        self._listeners.notify(BusState.CLOSED)

    # --- internals -----------------------------------------------------------------------------

    def _forget(self, subscription: NatsSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def _check_not_closed(self) -> None:
        if self._closing:
            raise BusClosed("the bus is closed")

    def _usable_client(self) -> Any:
        self._check_not_closed()
        if self._client is None:
            raise BusError("the bus is not connected; call connect() first")
        return self._client

    def _translate(self, error: nats.errors.Error) -> Exception:
        if isinstance(error, nats.errors.OutboundBufferLimitError):
            return BusError("NATS is unreachable and the outgoing buffer is full")
        if isinstance(error, nats.errors.MaxPayloadError):
            return ValueError("bus payload exceeds the server's max_payload")
        if isinstance(error, nats.errors.BadSubjectError | nats.errors.BadHeaderError):
            return ValueError(_describe(error))
        if isinstance(
            error, nats.errors.ConnectionClosedError | nats.errors.ConnectionDrainingError
        ):
            if self._closing:
                return BusClosed("the bus is closed")
            return BusError(f"the connection to NATS at {self.server} is closed")
        return BusError(f"NATS error: {_describe(error)}")
