"""Bus protocol (DESIGN.md section 4).

Messages are JSON objects. Every message carries headers `v` (schema version) and `ctx` (the
context id of the request or job that caused it); implementations add both on publish and bind
`ctx` into the logging context while a handler runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from overcast.core.context import context_scope, current_context_id
from overcast.models.errors import ServiceUnavailable

SCHEMA_VERSION = "1"
HEADER_VERSION = "v"
HEADER_CONTEXT = "ctx"


class BusError(ServiceUnavailable):
    """The bus could not do what was asked; callers may retry."""


class BusTimeout(BusError):
    """A request got no reply in time."""


class NoResponders(BusError):
    """A request went to a subject nobody subscribes to (answered at once, no timeout)."""


class BusClosed(BusError):
    """The bus was closed by its owner."""


class BusState(StrEnum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTED = "reconnected"
    CLOSED = "closed"


@dataclass(frozen=True)
class Message:
    subject: str
    data: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    # Inbox to answer to, for request/reply; None for plain publishes.
    reply: str | None = None

    @property
    def context_id(self) -> str | None:
        return self.headers.get(HEADER_CONTEXT)

    @property
    def schema_version(self) -> str | None:
        return self.headers.get(HEADER_VERSION)


Handler = Callable[[Message], Awaitable[None]]
StateListener = Callable[[BusState], None]


class Subscription(Protocol):
    subject: str
    queue: str | None

    async def unsubscribe(self) -> None: ...


class Bus(Protocol):
    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Connect (or, for memory, mark ready). Idempotent."""

    async def publish(
        self, subject: str, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> None:
        """Fire and forget. While disconnected, messages are buffered and sent on reconnect."""

    async def subscribe(
        self, subject: str, handler: Handler, *, queue: str | None = None
    ) -> Subscription:
        """NATS subject semantics: `*` matches one token, `>` the rest. Within a queue group
        each message goes to exactly one member. Handlers run as tasks; an exception in one is
        logged, never propagated to the publisher."""

    async def request(
        self,
        subject: str,
        data: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the protocol's own deadline
        headers: dict[str, str] | None = None,
    ) -> Message:
        """Send and wait for the first reply. Raises NoResponders at once when no subscriber
        matches and BusTimeout after `timeout` seconds."""

    async def respond(
        self, request: Message, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> None:
        """Answer a request (no-op for a message without a reply inbox)."""

    def add_state_listener(self, listener: StateListener) -> None:
        """Called on disconnect and reconnect (routers suspend pruning meanwhile)."""

    async def close(self) -> None:
        """Drain: stop taking messages, let running handlers finish, flush, disconnect."""


# --- Shared by the implementations --------------------------------------------------------------
# Both buses validate, encode and dispatch the same way, so the conformance suite tests one
# behaviour and nats-py's quirks (it closes the connection on a server -ERR) are never reached.

# nats-server's default max_payload; the memory bus enforces the same limit.
MAX_PAYLOAD_BYTES = 1024 * 1024

_SUBJECT_FORBIDDEN = re.compile(r"[\s]")
_HEADER_KEY = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def validate_subject(subject: str, *, pattern: bool = False) -> str:
    """A subject to publish to (`pattern=False`: no wildcards) or to subscribe to (`*` as a
    whole token, `>` as the last token). Raises ValueError."""
    if not isinstance(subject, str) or not subject or _SUBJECT_FORBIDDEN.search(subject):
        raise ValueError(f"not a valid bus subject: {subject!r}")
    parts = subject.split(".")
    for index, part in enumerate(parts):
        if not part:
            raise ValueError(f"not a valid bus subject (empty token): {subject!r}")
        if not pattern and ("*" in part or ">" in part):
            raise ValueError(f"wildcards are for subscriptions, not publishing: {subject!r}")
        if ("*" in part and part != "*") or (">" in part and part != ">"):
            raise ValueError(f"a wildcard must be a whole token: {subject!r}")
        if part == ">" and index != len(parts) - 1:
            raise ValueError(f"'>' must be the last token: {subject!r}")
    return subject


def validate_queue(queue: str | None) -> str | None:
    if queue is not None and (not queue or _SUBJECT_FORBIDDEN.search(queue)):
        raise ValueError(f"not a valid queue group name: {queue!r}")
    return queue


def build_headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    """`v` and the bound `ctx`, then the caller's headers (which win). Values are trimmed, as
    on the NATS wire, so both buses deliver the same headers."""
    headers = {HEADER_VERSION: SCHEMA_VERSION}
    ctx = current_context_id()
    if ctx:
        headers[HEADER_CONTEXT] = ctx
    for key, value in (extra or {}).items():
        if not isinstance(key, str) or not _HEADER_KEY.match(key):
            raise ValueError(f"not a valid header name: {key!r}")
        if not isinstance(value, str):
            raise TypeError(f"header {key!r} must be a string, not {type(value).__name__}")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {key!r} must not contain a line break")
        headers[key] = value.strip()
    return headers


def encode_payload(data: dict[str, Any]) -> bytes:
    """JSON bytes of a payload object. TypeError/ValueError at the call site when it is not a
    JSON object (or is too large): nothing is ever dropped silently."""
    if not isinstance(data, dict):
        raise TypeError(f"a bus payload must be a dict, not {type(data).__name__}")
    encoded = json.dumps(data, separators=(",", ":"), allow_nan=False).encode()
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"bus payload of {len(encoded)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    return encoded


def decode_payload(raw: bytes) -> dict[str, Any]:
    """The payload object; an empty body is `{}`. ValueError when it is not a JSON object."""
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("bus payload is not a JSON object")
    return data


async def run_handler(handler: Handler, message: Message, logger: Any) -> None:
    """Run one handler inside the sender's context; an exception is logged (never the
    payload) and swallowed so the subscription lives on."""
    with context_scope(message.context_id):
        try:
            await handler(message)
        except Exception:
            logger.exception(
                "bus.handler_failed",
                subject=message.subject,
                handler=getattr(handler, "__qualname__", repr(handler)),
            )


class SubscriptionWorker:
    """One subscription's consumer task: its messages are handled one at a time in arrival
    order, while other subscriptions' workers run concurrently. The task starts from an empty
    context, so nothing bound by the subscriber leaks into handlers' log lines."""

    def __init__(self, subject: str, handler: Handler, logger: Any) -> None:
        self.subject = subject
        self._handler = handler
        self._logger = logger
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._accepting = True
        self._discard = False
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"bus-subscription:{subject}", context=contextvars.Context()
        )

    @property
    def accepting(self) -> bool:
        return self._accepting

    def offer(self, message: Message) -> None:
        if self._accepting:
            self._queue.put_nowait(message)

    def stop(self, *, discard: bool) -> None:
        """Take no more messages. `discard`: drop the queued ones (unsubscribe); otherwise
        handle them first (drain). The running handler is never interrupted."""
        self._discard = self._discard or discard
        if self._accepting:
            self._accepting = False
            self._queue.put_nowait(None)

    async def _run(self) -> None:
        while True:
            message = await self._queue.get()
            if message is None:
                return
            if not self._discard:
                await run_handler(self._handler, message, self._logger)


async def drain_workers(workers: Iterable[SubscriptionWorker], grace: float, logger: Any) -> None:
    """Stop the workers, let them finish their queued messages for up to `grace` seconds,
    then cancel what is left. The calling task itself (close() from a handler) is skipped."""
    current = asyncio.current_task()
    tasks = []
    for worker in workers:
        worker.stop(discard=False)
        if worker.task is not current and not worker.task.done():
            tasks.append(worker.task)
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=grace)
    if pending:
        logger.warning("bus.drain_timeout", handlers=len(pending), seconds=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class StateListeners:
    """The registered state listeners; one failing listener never stops the others."""

    def __init__(self, logger: Any) -> None:
        self._listeners: list[StateListener] = []
        self._logger = logger
        self.last: BusState | None = None

    def add(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def notify(self, state: BusState) -> None:
        if state == self.last:
            return
        self.last = state
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception:
                self._logger.exception("bus.state_listener_failed", state=str(state))
