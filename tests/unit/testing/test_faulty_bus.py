"""FaultyBus on the memory bus: each fault happens to about its share of messages (seeded, so
the counts are the same on every run), exempt subjects and a switched-off bus are transparent,
a dropped request times out as the inner bus would, and close() leaves nothing behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from overcast.bus.base import BusClosed, BusTimeout, Message
from overcast.bus.memory import MemoryBroker, MemoryBus
from overcast.testing.faulty_bus import FAULTED_HEADER, Fault, Faults, FaultStats, FaultyBus

N = 400
MakeBus = Callable[..., Awaitable[MemoryBus]]


@pytest.fixture
async def make_bus() -> AsyncIterator[MakeBus]:
    broker = MemoryBroker()
    made: list[MemoryBus] = []

    async def make(name: str = "test", request_timeout: float = 2.0) -> MemoryBus:
        bus = MemoryBus(broker=broker, name=name, request_timeout=request_timeout)
        await bus.connect()
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def numbers(self) -> list[int]:
        return [int(message.data["n"]) for message in self.messages]

    async def settle(self, count: int | Callable[[], int], within: float = 1.0) -> None:
        """Until `count` messages arrived (or `within` seconds passed), and a moment more."""
        expected = count if callable(count) else lambda: count
        deadline = time.monotonic() + within
        while len(self.messages) < expected() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.01)  # and nothing more comes


async def _pair(make_bus: MakeBus, faults: Faults) -> tuple[FaultyBus, Inbox]:
    sender = FaultyBus(await make_bus("sender"), faults, name="sender")
    receiver = await make_bus("receiver")
    inbox = Inbox()
    await receiver.subscribe("t.>", inbox)
    return sender, inbox


async def _publish_many(bus: FaultyBus, count: int = N, subject: str = "t.x") -> None:
    for n in range(count):
        await bus.publish(subject, {"n": n})


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError):
        Faults(drop=0.6, delay=0.6)
    with pytest.raises(ValueError):
        Faults(drop=-0.1)
    with pytest.raises(ValueError):
        Faults(hold_seconds=0)


async def test_drops_its_share(make_bus: MakeBus) -> None:
    sender, inbox = await _pair(make_bus, Faults(drop=0.2, seed=1))
    await _publish_many(sender)
    stats = sender.stats
    await inbox.settle(N - stats.dropped)
    assert stats.rolled == N
    assert 0.15 * N <= stats.dropped <= 0.25 * N
    assert stats.counts() == {
        "dropped": stats.dropped,
        "delayed": 0,
        "duplicated": 0,
        "reordered": 0,
    }
    assert len(inbox.messages) == N - stats.dropped
    assert inbox.numbers == sorted(set(inbox.numbers))  # the rest in order, once each
    assert all(message.headers[FAULTED_HEADER] == "1" for message in inbox.messages)


async def test_the_same_seed_faults_the_same_messages(make_bus: MakeBus) -> None:
    first, first_inbox = await _pair(make_bus, Faults(drop=0.3, seed=7))
    await _publish_many(first, 100)
    await first_inbox.settle(100 - first.stats.dropped)
    first_numbers = list(first_inbox.numbers)
    second = FaultyBus(await make_bus("again"), Faults(drop=0.3, seed=7), name="sender")
    receiver = await make_bus("receiver-2")
    second_inbox = Inbox()
    await receiver.subscribe("t.>", second_inbox)
    await _publish_many(second, 100)
    await second_inbox.settle(100 - second.stats.dropped)
    assert second_inbox.numbers == first_numbers
    assert second.stats.dropped == first.stats.dropped


async def test_delays_its_share_and_delivers_it_later(make_bus: MakeBus) -> None:
    sender, inbox = await _pair(make_bus, Faults(delay=0.25, max_delay_seconds=0.03, seed=2))
    await _publish_many(sender)
    delayed = sender.stats.delayed
    assert 0.18 * N <= delayed <= 0.32 * N
    assert sender.pending == delayed  # not sent yet
    await inbox.settle(N)
    assert sorted(inbox.numbers) == list(range(N))
    assert inbox.numbers != list(range(N))
    assert sender.pending == 0


async def test_duplicates_its_share(make_bus: MakeBus) -> None:
    sender, inbox = await _pair(make_bus, Faults(duplicate=0.1, seed=3))
    await _publish_many(sender)
    await inbox.settle(N + sender.stats.duplicated)
    duplicated = sender.stats.duplicated
    assert 0.06 * N <= duplicated <= 0.14 * N
    assert len(inbox.messages) == N + duplicated
    assert set(inbox.numbers) == set(range(N))


async def test_reorders_its_share_after_the_next_message(make_bus: MakeBus) -> None:
    sender, inbox = await _pair(make_bus, Faults(reorder=0.1, hold_seconds=0.05, seed=4))
    await _publish_many(sender)
    await inbox.settle(N)
    reordered = sender.stats.reordered
    assert 0.06 * N <= reordered <= 0.14 * N
    assert sorted(inbox.numbers) == list(range(N))
    # Only a held message arrives after the one published next, and each does unless that
    # one was held too.
    position = {n: at for at, n in enumerate(inbox.numbers)}
    late = [n for n in range(N - 1) if position[n] > position[n + 1]]
    assert 0.8 * reordered <= len(late) <= reordered


async def test_a_held_message_is_flushed_when_nothing_follows(make_bus: MakeBus) -> None:
    sender, inbox = await _pair(make_bus, Faults(reorder=1.0, hold_seconds=0.02))
    await sender.publish("t.x", {"n": 0})
    assert inbox.messages == []
    await inbox.settle(1)
    assert inbox.numbers == [0]


async def test_exempt_subjects_pass_untouched(make_bus: MakeBus) -> None:
    sender, inbox = await _pair(make_bus, Faults(drop=1.0, exempt=frozenset({"t.keep"})))
    await _publish_many(sender, 50, "t.keep.x")
    await _publish_many(sender, 50, "t.lose")
    await inbox.settle(50)
    assert inbox.numbers == list(range(50))
    assert {message.subject for message in inbox.messages} == {"t.keep.x"}
    assert all(FAULTED_HEADER not in message.headers for message in inbox.messages)
    assert sender.stats.rolled == 50 and sender.stats.dropped == 50


async def test_only_the_subjects_it_names_are_faulted(make_bus: MakeBus) -> None:
    faults = Faults(drop=1.0, only=frozenset({"t.lose"}), exempt=frozenset({"t.lose.not"}))
    sender, inbox = await _pair(make_bus, faults)
    for subject in ("t.keep", "t.lose", "t.lose.more", "t.lose.not"):
        await sender.publish(subject, {"n": 0})
    await inbox.settle(2)
    assert sorted(message.subject for message in inbox.messages) == ["t.keep", "t.lose.not"]
    assert sender.stats.dropped == 2


async def test_switched_off_it_is_transparent(make_bus: MakeBus) -> None:
    faults = Faults(drop=0.25, delay=0.25, duplicate=0.25, reorder=0.25)
    sender, inbox = await _pair(make_bus, faults)
    sender.enabled = False
    await _publish_many(sender, 50)
    await inbox.settle(50)
    assert inbox.numbers == list(range(50))
    assert sender.stats == FaultStats()
    assert all(FAULTED_HEADER not in message.headers for message in inbox.messages)
    sender.enabled = True
    await _publish_many(sender, 50)
    assert sender.stats.rolled == 50


async def _responder(bus: Any, answered: list[Message], *, reply: bool = True) -> None:
    async def answer(message: Message) -> None:
        answered.append(message)
        if reply:
            await bus.respond(message, {"echo": message.data["n"]})

    await bus.subscribe("rpc.echo", answer)


async def test_a_dropped_request_times_out_as_the_inner_bus_would(make_bus: MakeBus) -> None:
    answered: list[Message] = []
    await _responder(await make_bus("responder"), answered)
    silent = await make_bus("silent-responder")
    await silent.subscribe("rpc.silent", lambda _message: asyncio.sleep(0))
    inner = await make_bus("requester", request_timeout=0.05)
    with pytest.raises(BusTimeout) as expected:
        await inner.request("rpc.silent", {"n": 0})
    requester = FaultyBus(inner, Faults(drop=1.0), name="requester")
    started = time.monotonic()
    with pytest.raises(BusTimeout) as dropped:
        await requester.request("rpc.echo", {"n": 1})
    assert time.monotonic() - started >= 0.05
    assert str(dropped.value) == str(expected.value).replace("rpc.silent", "rpc.echo")
    with pytest.raises(BusTimeout):
        await requester.request("rpc.echo", {"n": 2}, timeout=0.02)
    assert answered == []  # never sent
    assert requester.stats.dropped == 2


async def test_requests_are_delayed_duplicated_and_reordered(make_bus: MakeBus) -> None:
    answered: list[Message] = []
    await _responder(await make_bus("responder"), answered)
    inner = await make_bus("requester", request_timeout=1.0)
    delayed = FaultyBus(inner, Faults(delay=1.0, max_delay_seconds=0.03), name="d")
    reply = await delayed.request("rpc.echo", {"n": 1})
    assert reply.data == {"echo": 1} and delayed.stats.delayed == 1
    twice = FaultyBus(inner, Faults(duplicate=1.0), name="2")
    reply = await twice.request("rpc.echo", {"n": 2})
    assert reply.data == {"echo": 2}
    await asyncio.sleep(0.01)
    assert [message.data["n"] for message in answered] == [1, 2, 2]
    held = FaultyBus(inner, Faults(reorder=1.0, hold_seconds=0.02), name="r")
    started = time.monotonic()
    reply = await held.request("rpc.echo", {"n": 3})
    assert reply.data == {"echo": 3} and time.monotonic() - started >= 0.02


async def test_replies_are_faulted_too(make_bus: MakeBus) -> None:
    answered: list[Message] = []
    responder = FaultyBus(await make_bus("responder"), Faults(drop=1.0), name="responder")
    await _responder(responder, answered)
    requester = await make_bus("requester", request_timeout=0.05)
    with pytest.raises(BusTimeout):
        await requester.request("rpc.echo", {"n": 1})
    assert len(answered) == 1  # it arrived; its reply was lost
    assert responder.stats.by_subject[(Fault.DROP, "reply:rpc")] == 1
    responder.faults = Faults(delay=1.0, max_delay_seconds=0.02)
    reply = await requester.request("rpc.echo", {"n": 2}, timeout=1.0)
    assert reply.data == {"echo": 2} and responder.stats.delayed == 1


async def test_the_receive_side_faults_deliveries(make_bus: MakeBus) -> None:
    publisher = await make_bus("publisher")
    faults = Faults(drop=0.2, duplicate=0.1, on_send=False, on_receive=True, seed=5)
    receiver = FaultyBus(await make_bus("receiver"), faults, name="receiver")
    inbox = Inbox()
    await receiver.subscribe("t.>", inbox)
    for n in range(N):
        await publisher.publish("t.x", {"n": n})
    stats = receiver.stats
    await inbox.settle(lambda: N - stats.dropped + stats.duplicated if stats.rolled == N else N * 2)
    assert stats.rolled == N
    assert 0.15 * N <= stats.dropped <= 0.25 * N
    assert 0.06 * N <= stats.duplicated <= 0.14 * N
    assert len(inbox.messages) == N - stats.dropped + stats.duplicated


async def test_a_message_is_faulted_once_however_many_faulty_buses_it_passes(
    make_bus: MakeBus,
) -> None:
    both = Faults(drop=0.3, on_send=True, on_receive=True, seed=6)
    sender = FaultyBus(await make_bus("sender"), both, name="sender")
    receiver = FaultyBus(await make_bus("receiver"), both, name="receiver")
    inbox = Inbox()
    await receiver.subscribe("t.>", inbox)
    await _publish_many(sender)
    await inbox.settle(N - sender.stats.dropped)
    assert receiver.stats.rolled == 0
    assert len(inbox.messages) == N - sender.stats.dropped


async def test_an_unsubscribed_handler_gets_no_late_delivery(make_bus: MakeBus) -> None:
    publisher = await make_bus("publisher")
    faults = Faults(delay=1.0, max_delay_seconds=0.02, on_send=False, on_receive=True)
    receiver = FaultyBus(await make_bus("receiver"), faults, name="receiver")
    inbox = Inbox()
    subscription = await receiver.subscribe("t.>", inbox)
    await publisher.publish("t.x", {"n": 0})
    await asyncio.sleep(0.005)
    await subscription.unsubscribe()
    await asyncio.sleep(0.04)
    assert inbox.messages == []


async def test_close_cancels_what_is_pending(make_bus: MakeBus) -> None:
    sender, inbox = await _pair(make_bus, Faults(delay=1.0, max_delay_seconds=10.0))
    await _publish_many(sender, 20)
    assert sender.pending == 20
    await sender.close()
    assert sender.pending == 0
    assert inbox.messages == []
    with pytest.raises(BusClosed):
        await sender.publish("t.x", {"n": 0})


async def test_close_ends_a_dropped_request_s_wait(make_bus: MakeBus) -> None:
    requester = FaultyBus(await make_bus("requester"), Faults(drop=1.0), name="requester")
    waiting = asyncio.create_task(requester.request("rpc.echo", {"n": 1}, timeout=5.0))
    await asyncio.sleep(0.01)
    await requester.close()
    with pytest.raises(BusClosed):
        await waiting


async def test_call_site_errors_are_raised_even_for_dropped_messages(make_bus: MakeBus) -> None:
    sender = FaultyBus(await make_bus("sender"), Faults(drop=1.0), name="sender")
    with pytest.raises(ValueError):
        await sender.publish("t.*", {"n": 0})
    with pytest.raises(TypeError):
        await sender.publish("t.x", ["not", "a", "dict"])  # type: ignore[arg-type]
