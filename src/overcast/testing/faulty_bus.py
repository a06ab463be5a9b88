"""A bus that loses, delays, duplicates and reorders a share of messages (issue 7's fault test).

The platform promises to converge whatever the bus does to single messages (DESIGN.md section
1: heartbeats repeat the truth, commands are idempotent, reports carry sequence numbers). The
in-process bus never loses anything and NATS hardly ever does on loopback, so without this
wrapper those promises are untested. `FaultyBus` wraps another `Bus` (memory or NATS) and,
while its switch is on, rolls a seeded die for each message:

- on the send side (`Faults.on_send`, the default) for what this bus sends: `publish` and
  `respond` messages are dropped (never sent), delayed (sent later from a task), duplicated
  (sent twice) or reordered (held back until the next message this bus sends, at most
  `hold_seconds`); a dropped `request` raises BusTimeout after the request's timeout, exactly
  as the inner bus would when no reply comes, a delayed one is sent late (within the same
  deadline), a duplicated one is sent twice (the second reply is ignored), a reordered one
  waits for the next message;
- on the receive side (`Faults.on_receive`) for what this bus's subscriptions deliver: the
  handler is not called, called later, called twice, or called after the next delivery.

One die per message, so the shares mean what they say: a faulty sender marks what it sent
(`FAULTED_HEADER`) and a faulty receiver lets marked messages through untouched. Wrapping
every component's bus on the send side faults every message once. Subjects starting with one
of `Faults.exempt` (or with none of `Faults.only`) are never touched. `FaultStats` counts what
was done, so that a test can check that the faults really happened. Test support only: no
component imports it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from overcast.bus.base import (
    Bus,
    BusClosed,
    BusTimeout,
    Handler,
    Message,
    StateListener,
    Subscription,
    build_headers,
    encode_payload,
    run_handler,
    validate_subject,
)
from overcast.core.logging import get_logger

_log = get_logger("overcast.testing.faulty_bus")

# Set on every message a faulty sender rolled the die for: a faulty receiver does not again.
FAULTED_HEADER = "x-overcast-faulted"
# When the inner bus does not say what its requests' default timeout is.
DEFAULT_REQUEST_TIMEOUT = 5.0

Send = Callable[[dict[str, str] | None], Awaitable[None]]


class Fault(StrEnum):
    DROP = "dropped"
    DELAY = "delayed"
    DUPLICATE = "duplicated"
    REORDER = "reordered"


@dataclass(frozen=True)
class Faults:
    """What to do to which share of messages (each 0..1; together at most 1)."""

    drop: float = 0.0
    delay: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    # A delayed message waits a uniform 0..max_delay_seconds.
    max_delay_seconds: float = 0.3
    # A reordered message waits for the next one at most this long.
    hold_seconds: float = 0.1
    seed: int = 0
    # Subject prefixes never faulted; if `only` is set, only subjects with one of its prefixes
    # are (a reply goes by its request's subject).
    exempt: frozenset[str] = frozenset()
    only: frozenset[str] | None = None
    on_send: bool = True
    on_receive: bool = False

    def __post_init__(self) -> None:
        shares = (self.drop, self.delay, self.duplicate, self.reorder)
        if any(not 0.0 <= share <= 1.0 for share in shares) or sum(shares) > 1.0 + 1e-9:
            raise ValueError(f"fault shares must be in 0..1 and add up to at most 1: {shares}")
        if self.max_delay_seconds < 0 or self.hold_seconds <= 0:
            raise ValueError("max_delay_seconds must be >= 0 and hold_seconds > 0")

    def roll(self, rng: random.Random) -> Fault | None:
        draw = rng.random()
        for fault, share in (
            (Fault.DROP, self.drop),
            (Fault.DELAY, self.delay),
            (Fault.DUPLICATE, self.duplicate),
            (Fault.REORDER, self.reorder),
        ):
            if draw < share:
                return fault
            draw -= share
        return None

    def exempts(self, subject: str) -> bool:
        if self.only is not None and not subject.startswith(tuple(self.only)):
            return True
        return subject.startswith(tuple(self.exempt))


@dataclass
class FaultStats:
    """What the faulty buses sharing it did; `rolled` counts the messages the die was cast for."""

    rolled: int = 0
    dropped: int = 0
    delayed: int = 0
    duplicated: int = 0
    reordered: int = 0
    # (fault, subject's first token; "reply:<token>" for a reply) -> count
    by_subject: Counter[tuple[Fault, str]] = field(default_factory=Counter)

    def note(self, fault: Fault, subject: str) -> None:
        setattr(self, fault.value, getattr(self, fault.value) + 1)
        self.by_subject[(fault, subject)] += 1

    def counts(self) -> dict[str, int]:
        return {fault.value: getattr(self, fault.value) for fault in Fault}


@dataclass
class FaultSwitch:
    """Faults on or off at run time; one switch may be shared by several buses."""

    on: bool = True


class _FaultySubscription:
    def __init__(self, subject: str, queue: str | None) -> None:
        self.subject = subject
        self.queue = queue
        self.active = True
        self.inner: Subscription | None = None

    async def unsubscribe(self) -> None:
        self.active = False  # delayed and held deliveries are dropped too
        if self.inner is not None:
            await self.inner.unsubscribe()


class FaultyBus:
    """The `Bus` protocol around `inner`, with faults (see the module docstring)."""

    def __init__(
        self,
        inner: Bus,
        faults: Faults,
        *,
        name: str = "",
        stats: FaultStats | None = None,
        switch: FaultSwitch | None = None,
        request_timeout: float | None = None,
    ) -> None:
        self.inner = inner
        self.faults = faults
        self.name = name
        self.stats = stats if stats is not None else FaultStats()
        self.switch = switch if switch is not None else FaultSwitch()
        # Seeded per bus, so that buses sharing a seed do not fault in lockstep.
        self._rng = random.Random(f"{faults.seed}/{name}")
        if request_timeout is None:
            request_timeout = float(getattr(inner, "request_timeout", DEFAULT_REQUEST_TIMEOUT))
        self._request_timeout = request_timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._gates: list[asyncio.Event] = []
        self._closed = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return self.switch.on

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self.switch.on = on

    @property
    def pending(self) -> int:
        """Delayed or held messages not yet sent or delivered."""
        return sum(1 for task in self._tasks if not task.done())

    # --- the Bus protocol -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.inner.connected and not self._closed.is_set()

    async def connect(self) -> None:
        await self.inner.connect()

    async def publish(
        self, subject: str, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> None:
        self._check_open()

        async def send(marked: dict[str, str] | None) -> None:
            await self.inner.publish(subject, data, headers=marked)

        if not self.faults.on_send:
            await send(headers)
            return
        _check_message(subject, data, headers)
        await self._send(subject, subject, send, headers)

    async def subscribe(
        self, subject: str, handler: Handler, *, queue: str | None = None
    ) -> Subscription:
        self._check_open()
        if not self.faults.on_receive:
            return await self.inner.subscribe(subject, handler, queue=queue)
        subscription = _FaultySubscription(subject, queue)

        async def deliver(message: Message) -> None:
            if subscription.active:
                await self._deliver(subscription, handler, message)

        subscription.inner = await self.inner.subscribe(subject, deliver, queue=queue)
        return subscription

    async def request(
        self,
        subject: str,
        data: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the Bus protocol's signature
        headers: dict[str, str] | None = None,
    ) -> Message:
        self._check_open()
        wait = self._request_timeout if timeout is None else timeout
        if wait <= 0:
            raise ValueError("a request timeout must be positive")
        fault: Fault | None = None
        rolled = False
        if self.faults.on_send:
            _check_message(subject, data, headers)
            rolled, fault = self._roll(subject, subject)
        if not rolled:
            return await self.inner.request(subject, data, timeout=wait, headers=headers)
        marked = _mark(headers)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        if fault is Fault.DROP:
            # Never sent: no reply can come, whoever listens.
            await self._closed_within(wait)
            raise BusTimeout(f"no reply on {subject} within {wait:g}s")
        if fault is Fault.DELAY:
            await asyncio.sleep(min(self._delay(), wait))
        elif fault is Fault.REORDER:
            await self._hold()
        self._release()
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise BusTimeout(f"no reply on {subject} within {wait:g}s")
        if fault is Fault.DUPLICATE:
            self._spawn(
                _quietly(self.inner.request(subject, data, timeout=wait, headers=marked), subject)
            )
        try:
            return await self.inner.request(subject, data, timeout=remaining, headers=marked)
        except BusTimeout:
            raise BusTimeout(f"no reply on {subject} within {wait:g}s") from None

    async def respond(
        self, request: Message, data: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> None:
        reply = request.reply

        async def send(marked: dict[str, str] | None) -> None:
            await self.inner.respond(request, data, headers=marked)

        # Handlers still answer while the inner bus drains, faults or not.
        if reply is None or not self.faults.on_send or self._closed.is_set():
            await send(headers)
            return
        _check_message(reply, data, headers)
        await self._send(request.subject, f"reply:{_token(request.subject)}", send, headers)

    def add_state_listener(self, listener: StateListener) -> None:
        self.inner.add_state_listener(listener)

    async def close(self) -> None:
        """Cancel what is delayed or held (it is lost, as on a dropped connection), then
        close the inner bus."""
        self._closed.set()
        self._release()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await self.inner.close()

    # --- faults -----------------------------------------------------------------------------

    def _roll(self, subject: str, label: str) -> tuple[bool, Fault | None]:
        """(whether the die was cast, the fault it chose)."""
        if not self.switch.on or self.faults.exempts(subject):
            return False, None
        self.stats.rolled += 1
        fault = self.faults.roll(self._rng)
        if fault is not None:
            self.stats.note(fault, label if label.startswith("reply:") else _token(label))
        return True, fault

    async def _send(
        self, subject: str, label: str, send: Send, headers: dict[str, str] | None
    ) -> None:
        rolled, fault = self._roll(subject, label)
        if not rolled:
            await send(headers)
            self._release()
            return
        marked = _mark(headers)
        if fault is Fault.DROP:
            return
        if fault is Fault.REORDER:
            self._spawn(self._held(lambda: send(marked), subject))
            return
        if fault is Fault.DELAY:
            self._spawn(self._later(self._delay(), lambda: send(marked), subject))
        else:
            await send(marked)
            if fault is Fault.DUPLICATE:
                await send(marked)
        self._release()

    async def _deliver(
        self, subscription: _FaultySubscription, handler: Handler, message: Message
    ) -> None:
        rolled, fault = (False, None)
        if FAULTED_HEADER not in message.headers:
            rolled, fault = self._roll(message.subject, message.subject)

        async def run() -> None:
            if subscription.active:
                await run_handler(handler, _copy(message), _log)

        if fault is Fault.DROP:
            return
        if fault is Fault.REORDER:
            self._spawn(self._held(run, message.subject))
            return
        if fault is Fault.DELAY:
            self._spawn(self._later(self._delay(), run, message.subject))
        else:
            await handler(message)
            if fault is Fault.DUPLICATE:
                await run()
        if rolled or self._gates:
            self._release()

    def _delay(self) -> float:
        return self._rng.uniform(0.0, self.faults.max_delay_seconds)

    async def _later(
        self, seconds: float, send: Callable[[], Awaitable[None]], subject: str
    ) -> None:
        await asyncio.sleep(seconds)
        await _quietly(send(), subject)

    async def _held(self, send: Callable[[], Awaitable[None]], subject: str) -> None:
        await self._hold()
        await _quietly(send(), subject)

    async def _hold(self) -> None:
        """Until the next message goes (or `hold_seconds` passed)."""
        gate = asyncio.Event()
        self._gates.append(gate)
        try:
            await asyncio.wait_for(gate.wait(), self.faults.hold_seconds)
        except TimeoutError:
            pass
        finally:
            if gate in self._gates:
                self._gates.remove(gate)

    def _release(self) -> None:
        gates, self._gates = self._gates, []
        for gate in gates:
            gate.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        if self._closed.is_set():
            work.close()
            return
        task = asyncio.get_running_loop().create_task(work, name=f"faulty-bus:{self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _closed_within(self, seconds: float) -> None:
        """Wait `seconds`; BusClosed if the bus is closed meanwhile."""
        try:
            await asyncio.wait_for(self._closed.wait(), seconds)
        except TimeoutError:
            return
        raise BusClosed("the bus was closed while a request waited")

    def _check_open(self) -> None:
        if self._closed.is_set():
            raise BusClosed("the bus is closed")


def _check_message(subject: str, data: dict[str, Any], headers: dict[str, str] | None) -> None:
    """The inner bus's call-site errors, raised even for a message that will not be sent."""
    validate_subject(subject)
    encode_payload(data)
    build_headers(headers)


def _mark(headers: dict[str, str] | None) -> dict[str, str]:
    return {**(headers or {}), FAULTED_HEADER: "1"}


def _token(subject: str) -> str:
    return subject.split(".", 1)[0]


def _copy(message: Message) -> Message:
    # A second (or late) delivery gets its own payload, as a fresh decode would.
    return dataclasses.replace(
        message, data=copy.deepcopy(message.data), headers=dict(message.headers)
    )


async def _quietly(work: Awaitable[Any], subject: str) -> None:
    """A late send or a duplicate's copy: its failure (the bus closed meanwhile, a timeout
    nobody waits for) is nobody's to handle."""
    try:
        await work
    except Exception as error:
        _log.debug("faulty_bus.late_send_failed", subject=subject, error=type(error).__name__)
