"""The in-process bus: the embedded default, and the reference the conformance suite holds NATS
to.

A `MemoryBroker` plays nats-server: it routes messages between the `MemoryBus` clients attached
to it (one private broker per bus unless one is shared, e.g. by a test standing in for several
processes). Payloads go through JSON on the way, so a subscriber never shares a dict with the
publisher and sees exactly what NATS would deliver.

Simulated outage (tests, and router/health tests): `simulate_disconnect()` takes one client off
its broker the way a dropped TCP connection would. While disconnected:

- `publish()` and `respond()` do not raise: messages are buffered in order and routed on
  `simulate_reconnect()` (up to `pending_bytes`, then BusError, like nats-py's pending buffer);
- `request()` is buffered the same way and waits for its reply: it raises BusTimeout when the
  outage outlasts its timeout (a reply may still come if the client is back in time);
- messages other clients publish meanwhile are not delivered to this client's subscriptions
  (NATS loses them too); subscriptions themselves survive.

`close()` drains: no new publish/request/subscribe (BusClosed), queued messages are handled
for up to `drain_timeout` seconds (handlers may still `respond()`), requests still waiting get
BusClosed, messages buffered by an outage are dropped.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from dataclasses import dataclass
from typing import Any

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
from overcast.bus.subjects import subject_matches
from overcast.core.logging import get_logger

_log = get_logger("overcast.bus.memory")

INBOX_PREFIX = "_INBOX."
DEFAULT_PENDING_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class _Envelope:
    subject: str
    payload: bytes
    headers: dict[str, str]
    reply: str | None = None

    def to_message(self) -> Message:
        # A fresh decode per delivery: no two handlers share a payload object.
        return Message(
            subject=self.subject,
            data=decode_payload(self.payload),
            headers=dict(self.headers),
            reply=self.reply,
        )


class MemorySubscription:
    def __init__(self, bus: MemoryBus, subject: str, queue: str | None, handler: Handler) -> None:
        self.subject = subject
        self.queue = queue
        self.bus = bus
        self.worker = SubscriptionWorker(subject, handler, _log)

    @property
    def active(self) -> bool:
        return self.worker.accepting

    async def unsubscribe(self) -> None:
        """Stop delivery at once; queued messages are dropped, a running handler finishes
        (so a handler may unsubscribe itself). Idempotent."""
        self.bus._remove_subscription(self)
        self.worker.stop(discard=True)


class MemoryBroker:
    """Routes envelopes between the connected clients, NATS-style."""

    def __init__(self) -> None:
        self._subscriptions: list[MemorySubscription] = []
        self._inboxes: dict[str, tuple[MemoryBus, asyncio.Future[Message]]] = {}

    def add(self, subscription: MemorySubscription) -> None:
        self._subscriptions.append(subscription)

    def remove(self, subscription: MemorySubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def open_inbox(self, owner: MemoryBus) -> tuple[str, asyncio.Future[Message]]:
        inbox = INBOX_PREFIX + secrets.token_hex(11)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._inboxes[inbox] = (owner, future)
        return inbox, future

    def close_inbox(self, inbox: str) -> None:
        self._inboxes.pop(inbox, None)

    def route(self, envelope: _Envelope) -> int:
        """Deliver to every matching plain subscription and to one member of each matching
        queue group, on connected clients only. Returns the number of deliveries."""
        delivered = 0
        target = self._inboxes.get(envelope.subject)
        if target is not None:
            owner, future = target
            if owner.reachable:
                delivered += 1
                if not future.done():
                    future.set_result(envelope.to_message())
        groups: dict[str, list[MemorySubscription]] = {}
        for subscription in list(self._subscriptions):
            if not (subscription.active and subscription.bus.reachable):
                continue
            if not subject_matches(subscription.subject, envelope.subject):
                continue
            if subscription.queue is None:
                subscription.worker.offer(envelope.to_message())
                delivered += 1
            else:
                groups.setdefault(subscription.queue, []).append(subscription)
        for members in groups.values():
            random.choice(members).worker.offer(envelope.to_message())
            delivered += 1
        return delivered


class MemoryBus:
    """The `Bus` protocol in process. `connect()` marks it ready (nothing to reach)."""

    def __init__(
        self,
        *,
        broker: MemoryBroker | None = None,
        request_timeout: float = 5.0,
        name: str = "overcast",
        drain_timeout: float = 5.0,
        pending_bytes: int = DEFAULT_PENDING_BYTES,
    ) -> None:
        self.name = name
        self._broker = broker if broker is not None else MemoryBroker()
        self._request_timeout = request_timeout
        self._drain_timeout = drain_timeout
        self._pending_limit = pending_bytes
        self._started = False
        self._online = False
        self._closing = False
        self._closed = asyncio.Event()
        self._subscriptions: list[MemorySubscription] = []
        # Messages sent while disconnected, with the reply future of a buffered request.
        self._buffer: list[tuple[_Envelope, asyncio.Future[Message] | None]] = []
        self._buffered_bytes = 0
        self._requests: set[asyncio.Future[Message]] = set()
        self._listeners = StateListeners(_log)

    @property
    def connected(self) -> bool:
        return self.reachable and not self._closing

    @property
    def request_timeout(self) -> float:
        """Seconds a request waits for its reply when the caller gives no timeout."""
        return self._request_timeout

    @property
    def reachable(self) -> bool:
        """On the broker (also while draining, so replies still reach it)."""
        return self._started and self._online

    async def connect(self) -> None:
        self._check_not_closed()
        if not self._started:
            self._started = True
            self._online = True
            _log.info("bus.connected", kind="memory", name=self.name)

    async def publish(
        self, subject: str, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> None:
        self._check_usable()
        validate_subject(subject)
        self._send(_Envelope(subject, encode_payload(data), build_headers(headers)), None)

    async def subscribe(
        self, subject: str, handler: Handler, *, queue: str | None = None
    ) -> MemorySubscription:
        self._check_usable()
        subscription = MemorySubscription(
            self, validate_subject(subject, pattern=True), validate_queue(queue), handler
        )
        self._subscriptions.append(subscription)
        self._broker.add(subscription)
        return subscription

    async def request(
        self,
        subject: str,
        data: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the Bus protocol's signature
        headers: dict[str, str] | None = None,
    ) -> Message:
        self._check_usable()
        wait = self._request_timeout if timeout is None else timeout
        if wait <= 0:
            raise ValueError("a request timeout must be positive")
        payload = encode_payload(data)
        validate_subject(subject)
        inbox, future = self._broker.open_inbox(self)
        self._requests.add(future)
        try:
            envelope = _Envelope(subject, payload, build_headers(headers), reply=inbox)
            if not self._send(envelope, future):
                raise NoResponders(f"no responders on {subject}")
            try:
                return await asyncio.wait_for(future, wait)
            except TimeoutError:
                raise BusTimeout(f"no reply on {subject} within {wait:g}s") from None
        finally:
            self._requests.discard(future)
            self._broker.close_inbox(inbox)
            if not future.done():
                future.cancel()

    async def respond(
        self, request: Message, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> None:
        if request.reply is None:
            return
        # Allowed while draining, so in-flight handlers can still answer.
        if self._closed.is_set():
            raise BusClosed("the bus is closed")
        if not self._started:
            raise BusError("the bus is not connected; call connect() first")
        self._send(_Envelope(request.reply, encode_payload(data), build_headers(headers)), None)

    def add_state_listener(self, listener: StateListener) -> None:
        self._listeners.add(listener)

    async def close(self) -> None:
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        for subscription in self._subscriptions:
            self._broker.remove(subscription)
        await drain_workers(
            [subscription.worker for subscription in self._subscriptions],
            self._drain_timeout,
            _log,
        )
        self._subscriptions.clear()
        if self._buffer:
            _log.warning("bus.buffer_dropped", kind="memory", messages=len(self._buffer))
        self._buffer.clear()
        self._buffered_bytes = 0
        for future in list(self._requests):
            if not future.done():
                future.set_exception(BusClosed("the bus was closed"))
        self._online = False
        self._closed.set()
        self._listeners.notify(BusState.CLOSED)
        _log.info("bus.closed", kind="memory", name=self.name)

    # --- simulated outage ----------------------------------------------------------------------

    def simulate_disconnect(self) -> None:
        """Drop off the broker as a lost connection would (see the module docstring)."""
        if not self._started or not self._online or self._closing:
            return
        self._online = False
        _log.warning("bus.disconnected", kind="memory", name=self.name)
        self._listeners.notify(BusState.DISCONNECTED)

    def simulate_reconnect(self) -> None:
        """Back on the broker: buffered messages are routed in order, then listeners hear
        RECONNECTED (nats-py's order)."""
        if not self._started or self._online or self._closing:
            return
        self._online = True
        buffered, self._buffer = self._buffer, []
        self._buffered_bytes = 0
        for envelope, future in buffered:
            delivered = self._broker.route(envelope)
            if not delivered and future is not None and not future.done():
                future.set_exception(NoResponders(f"no responders on {envelope.subject}"))
        _log.info("bus.reconnected", kind="memory", name=self.name, flushed=len(buffered))
        self._listeners.notify(BusState.RECONNECTED)

    # --- internals -----------------------------------------------------------------------------

    def _send(self, envelope: _Envelope, future: asyncio.Future[Message] | None) -> bool:
        """Route now, or buffer while disconnected. False when routed to nobody."""
        if self._online:
            return self._broker.route(envelope) > 0
        size = len(envelope.payload)
        if self._buffered_bytes + size > self._pending_limit:
            raise BusError("the bus is disconnected and its outgoing buffer is full")
        self._buffer.append((envelope, future))
        self._buffered_bytes += size
        return True

    def _remove_subscription(self, subscription: MemorySubscription) -> None:
        self._broker.remove(subscription)
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def _check_not_closed(self) -> None:
        if self._closing:
            raise BusClosed("the bus is closed")

    def _check_usable(self) -> None:
        self._check_not_closed()
        if not self._started:
            raise BusError("the bus is not connected; call connect() first")
