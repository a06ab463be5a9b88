"""One conformance suite for every bus: each test runs against `memory` and `nats`."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest

from overcast.bus.base import (
    HEADER_CONTEXT,
    HEADER_VERSION,
    SCHEMA_VERSION,
    Bus,
    BusClosed,
    BusError,
    BusState,
    BusTimeout,
    Message,
    NoResponders,
)
from overcast.bus.factory import create_bus
from overcast.bus.memory import MemoryBus
from overcast.bus.nats import NatsBus
from overcast.core.context import context_scope, current_context_id
from overcast.testing.bus_harness import BusHarness, Recorder, StateRecorder


async def settle(bus: Bus) -> None:
    """Wait until everything `bus` published so far has been routed (a sentinel round trip),
    then give the handler tasks a moment to run."""
    seen = asyncio.Event()

    async def on_sentinel(_message: Message) -> None:
        seen.set()

    subscription = await bus.subscribe("conformance.sentinel", on_sentinel)
    await bus.publish("conformance.sentinel", {})
    async with asyncio.timeout(5):
        await seen.wait()
    await subscription.unsubscribe()
    await asyncio.sleep(0.05)


# --- publish / subscribe -----------------------------------------------------------------------


async def test_publish_reaches_subscriber_with_version_header(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    received = Recorder()
    await bus.subscribe("app.started", received)

    await bus.publish("app.started", {"guid": "a1", "instances": [1, 2], "ok": True, "n": None})

    [message] = await received.wait_for(1)
    assert message.subject == "app.started"
    assert message.data == {"guid": "a1", "instances": [1, 2], "ok": True, "n": None}
    assert message.headers[HEADER_VERSION] == SCHEMA_VERSION
    assert message.schema_version == SCHEMA_VERSION
    assert message.reply is None
    assert bus.connected


async def test_messages_cross_between_buses(harness: BusHarness) -> None:
    publisher = await harness.make_bus(name="publisher")
    subscriber = await harness.make_bus(name="subscriber")
    received = Recorder()
    await subscriber.subscribe("cell.heartbeat", received)
    await settle(subscriber)

    await publisher.publish("cell.heartbeat", {"cell": "c1"})

    assert [m.data for m in await received.wait_for(1)] == [{"cell": "c1"}]


async def test_subscriber_gets_its_own_copy_of_the_payload(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    first, second = Recorder(), Recorder()

    async def mutating(message: Message) -> None:
        message.data["items"].append("mutated")
        await first(message)

    await bus.subscribe("copy.test", mutating)
    await bus.subscribe("copy.test", second)
    payload: dict[str, Any] = {"items": ["a"]}
    await bus.publish("copy.test", payload)
    payload["items"].append("after publish")

    await first.wait_for(1)
    await second.wait_for(1)
    assert second.data == [{"items": ["a"]}]
    assert payload == {"items": ["a", "after publish"]}


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"when": object()}, TypeError),
        ({"values": {1, 2}}, TypeError),
        ({"ratio": math.nan}, ValueError),
        (["not", "an", "object"], TypeError),
        ({"blob": "x" * (1024 * 1024 + 1)}, ValueError),
    ],
)
async def test_payload_that_is_not_a_json_object_raises_at_the_call_site(
    harness: BusHarness, payload: Any, error: type[Exception]
) -> None:
    bus = await harness.make_bus()
    received = Recorder()
    await bus.subscribe("bad.payload", received)

    with pytest.raises(error):
        await bus.publish("bad.payload", payload)
    with pytest.raises(error):
        await bus.request("bad.payload", payload, timeout=0.5)

    await settle(bus)
    assert received.messages == []


@pytest.mark.parametrize("subject", ["", "a..b", "a.*", "a.>", "with space", "a.b*"])
async def test_invalid_publish_subject_raises_value_error(
    harness: BusHarness, subject: str
) -> None:
    bus = await harness.make_bus()
    with pytest.raises(ValueError):
        await bus.publish(subject, {})
    # The connection survives a refused subject.
    received = Recorder()
    await bus.subscribe("still.alive", received)
    await bus.publish("still.alive", {})
    await received.wait_for(1)


@pytest.mark.parametrize("pattern", ["", "a..b", "a.>.b", "a.b*", "x y"])
async def test_invalid_subscription_pattern_raises_value_error(
    harness: BusHarness, pattern: str
) -> None:
    bus = await harness.make_bus()
    with pytest.raises(ValueError):
        await bus.subscribe(pattern, Recorder())


async def test_wildcards(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    one_token, rest, exact = Recorder(), Recorder(), Recorder()
    await bus.subscribe("logs.*", one_token)
    await bus.subscribe("logs.>", rest)
    await bus.subscribe("logs.app1", exact)

    for subject in ("logs.app1", "logs.app2", "logs.app1.web", "logs", "other.app1"):
        await bus.publish(subject, {"subject": subject})
    await settle(bus)

    assert [m.subject for m in one_token.messages] == ["logs.app1", "logs.app2"]
    assert [m.subject for m in rest.messages] == ["logs.app1", "logs.app2", "logs.app1.web"]
    assert [m.subject for m in exact.messages] == ["logs.app1"]


async def test_every_subscriber_receives(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    other = await harness.make_bus(name="other")
    recorders = [Recorder() for _ in range(3)]
    await bus.subscribe("instance.event", recorders[0])
    await bus.subscribe("instance.event", recorders[1])
    await other.subscribe("instance.event", recorders[2])
    await settle(other)

    await bus.publish("instance.event", {"n": 1})
    await bus.publish("instance.event", {"n": 2})

    for recorder in recorders:
        assert [m.data["n"] for m in await recorder.wait_for(2)] == [1, 2]


async def test_unsubscribe_stops_delivery(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    received, kept = Recorder(), Recorder()
    subscription = await bus.subscribe("router.register", received)
    await bus.subscribe("router.register", kept)
    assert subscription.subject == "router.register"
    assert subscription.queue is None

    await bus.publish("router.register", {"n": 1})
    await received.wait_for(1)
    await subscription.unsubscribe()
    await subscription.unsubscribe()  # idempotent
    await bus.publish("router.register", {"n": 2})

    await kept.wait_for(2)
    await settle(bus)
    assert received.data == [{"n": 1}]


async def test_handler_may_unsubscribe_itself_and_finish(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    seen: list[int] = []
    finished = asyncio.Event()
    holder: dict[str, Any] = {}

    async def once(message: Message) -> None:
        seen.append(message.data["n"])
        await holder["subscription"].unsubscribe()
        await asyncio.sleep(0.02)  # still running after unsubscribing
        finished.set()

    holder["subscription"] = await bus.subscribe("once.only", once)
    for n in range(3):
        await bus.publish("once.only", {"n": n})

    async with asyncio.timeout(5):
        await finished.wait()
    await settle(bus)
    assert seen == [0]


# --- headers and context -----------------------------------------------------------------------


async def test_context_travels_in_headers_and_binds_in_the_handler(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    seen: list[tuple[str | None, str | None]] = []
    done = asyncio.Event()

    async def handler(message: Message) -> None:
        seen.append((message.headers.get(HEADER_CONTEXT), current_context_id()))
        done.set()

    await bus.subscribe("ctx.test", handler)
    with context_scope("abc"):
        await bus.publish("ctx.test", {})

    async with asyncio.timeout(5):
        await done.wait()
    assert seen == [("abc", "abc")]


async def test_handler_without_sender_context_gets_a_fresh_one(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    seen: list[tuple[str | None, str | None]] = []
    done = asyncio.Event()

    async def handler(message: Message) -> None:
        seen.append((message.context_id, current_context_id()))
        done.set()

    # Whatever the subscriber had bound must not leak into its handlers.
    with context_scope("subscriber-ctx"):
        await bus.subscribe("noctx.test", handler)
    await bus.publish("noctx.test", {})

    async with asyncio.timeout(5):
        await done.wait()
    [(header, bound)] = seen
    assert header is None
    assert bound is not None
    assert bound != "subscriber-ctx"


async def test_caller_headers_merge_and_win(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    received = Recorder()
    await bus.subscribe("hdr.test", received)

    with context_scope("abc"):
        await bus.publish("hdr.test", {"n": 1}, headers={"x-source": "cell"})
        await bus.publish("hdr.test", {"n": 2}, headers={HEADER_CONTEXT: "mine"})

    first, second = await received.wait_for(2)
    assert first.headers == {
        HEADER_VERSION: SCHEMA_VERSION,
        HEADER_CONTEXT: "abc",
        "x-source": "cell",
    }
    assert second.context_id == "mine"
    with pytest.raises(ValueError):
        await bus.publish("hdr.test", {}, headers={"bad key": "x"})
    with pytest.raises(ValueError):
        await bus.publish("hdr.test", {}, headers={"x-inject": "a\r\nPUB evil 0"})


# --- queue groups ------------------------------------------------------------------------------


async def test_queue_group_delivers_each_message_to_exactly_one_member(
    harness: BusHarness,
) -> None:
    bus = await harness.make_bus()
    other = await harness.make_bus(name="other")
    members = [Recorder(), Recorder()]
    other_group, everyone = Recorder(), Recorder()
    first = await bus.subscribe("jobs.submitted", members[0], queue="workers")
    await other.subscribe("jobs.submitted", members[1], queue="workers")
    await other.subscribe("jobs.submitted", other_group, queue="auditors")
    await bus.subscribe("jobs.submitted", everyone)
    assert first.queue == "workers"
    await settle(other)

    for n in range(50):
        await bus.publish("jobs.submitted", {"n": n})

    await everyone.wait_for(50)
    await other_group.wait_for(50)
    async with asyncio.timeout(5):
        while sum(len(member.messages) for member in members) < 50:
            await asyncio.sleep(0.01)
    await settle(bus)

    got = sorted(m.data["n"] for member in members for m in member.messages)
    assert got == list(range(50))
    assert all(member.messages for member in members), "both members should get some"
    assert sorted(m.data["n"] for m in other_group.messages) == list(range(50))


# --- request / reply ---------------------------------------------------------------------------


async def test_request_reply_carries_context_both_ways(harness: BusHarness) -> None:
    requester = await harness.make_bus(name="requester")
    responder = await harness.make_bus(name="responder")
    seen: list[str | None] = []

    async def answer(message: Message) -> None:
        seen.append(current_context_id())
        assert message.reply is not None
        await responder.respond(message, {"echo": message.data["say"]})

    await responder.subscribe("cell.c1.rpc", answer)
    await settle(responder)

    with context_scope("req-ctx"):
        reply = await requester.request("cell.c1.rpc", {"say": "hi"}, timeout=2)

    assert reply.data == {"echo": "hi"}
    assert reply.schema_version == SCHEMA_VERSION
    assert reply.context_id == "req-ctx"
    assert seen == ["req-ctx"]


async def test_request_returns_the_first_reply(harness: BusHarness) -> None:
    bus = await harness.make_bus()

    def responder(name: str, delay: float) -> Any:
        async def answer(message: Message) -> None:
            await asyncio.sleep(delay)
            await bus.respond(message, {"from": name})

        return answer

    await bus.subscribe("agent.discover", responder("fast", 0))
    await bus.subscribe("agent.discover", responder("slow", 0.2))

    reply = await bus.request("agent.discover", {}, timeout=2)
    assert reply.data == {"from": "fast"}
    await asyncio.sleep(0.3)  # the late reply is dropped quietly


async def test_request_to_a_queue_group_is_answered_once(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    calls: list[str] = []

    def member(name: str) -> Any:
        async def answer(message: Message) -> None:
            calls.append(name)
            await bus.respond(message, {"by": name})

        return answer

    await bus.subscribe("cell.c2.rpc", member("a"), queue="cells")
    await bus.subscribe("cell.c2.rpc", member("b"), queue="cells")

    for _ in range(5):
        reply = await bus.request("cell.c2.rpc", {}, timeout=2)
        assert reply.data["by"] in ("a", "b")
    await settle(bus)
    assert len(calls) == 5


async def test_request_times_out(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    silent = Recorder()
    await bus.subscribe("cell.mute.rpc", silent)

    started = time.monotonic()
    with pytest.raises(BusTimeout):
        await bus.request("cell.mute.rpc", {}, timeout=0.3)
    elapsed = time.monotonic() - started

    assert 0.25 <= elapsed < 2
    assert len(silent.messages) == 1


async def test_request_uses_the_default_timeout(harness: BusHarness) -> None:
    bus = await harness.make_bus(request_timeout=0.3)
    await bus.subscribe("cell.mute.rpc", Recorder())
    with pytest.raises(BusTimeout):
        await bus.request("cell.mute.rpc", {})


async def test_request_without_subscribers_raises_no_responders_at_once(
    harness: BusHarness,
) -> None:
    bus = await harness.make_bus()
    started = time.monotonic()
    with pytest.raises(NoResponders):
        await bus.request("cell.nobody.rpc", {}, timeout=5)
    assert time.monotonic() - started < 1
    assert issubclass(NoResponders, BusError)


async def test_respond_to_a_plain_message_is_a_no_op(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    await bus.respond(Message(subject="x", data={}), {"ignored": True})


# --- handlers ----------------------------------------------------------------------------------


async def test_handler_exception_is_contained(harness: BusHarness) -> None:
    """A raising handler is logged; the subscription lives on, the publisher never sees the
    error, and a requester whose responder raised gets no reply: it times out."""
    bus = await harness.make_bus()
    handled: list[int] = []

    async def flaky(message: Message) -> None:
        if message.data["n"] == 1:
            raise RuntimeError("boom")
        handled.append(message.data["n"])
        if message.reply:
            await bus.respond(message, {"n": message.data["n"]})

    await bus.subscribe("flaky.work", flaky)
    await bus.publish("flaky.work", {"n": 1})
    await bus.publish("flaky.work", {"n": 2})
    with pytest.raises(BusTimeout):
        await bus.request("flaky.work", {"n": 1}, timeout=0.3)
    reply = await bus.request("flaky.work", {"n": 3}, timeout=2)

    assert reply.data == {"n": 3}
    assert handled == [2, 3]


async def test_slow_handler_does_not_block_other_subscriptions(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    release = asyncio.Event()
    slow_done = asyncio.Event()
    fast = Recorder()

    async def slow(_message: Message) -> None:
        await release.wait()
        slow_done.set()

    await bus.subscribe("work.item", slow)
    await bus.subscribe("work.item", fast)
    await bus.publish("work.item", {"n": 1})
    await bus.publish("work.item", {"n": 2})

    await fast.wait_for(2)
    assert not slow_done.is_set()
    release.set()
    async with asyncio.timeout(5):
        await slow_done.wait()


async def test_delivery_order_is_preserved_per_subscription(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    other = await harness.make_bus(name="other")
    received: list[int] = []
    done = asyncio.Event()
    total = 200

    async def handler(message: Message) -> None:
        if message.data["n"] % 7 == 0:
            await asyncio.sleep(0.001)  # handlers that yield must not reorder
        received.append(message.data["n"])
        if len(received) == total:
            done.set()

    await other.subscribe("ordered.stream", handler)
    await settle(other)
    for n in range(total):
        await bus.publish("ordered.stream", {"n": n})

    async with asyncio.timeout(10):
        await done.wait()
    assert received == list(range(total))


# --- connection state, outage, close -----------------------------------------------------------


async def test_bus_must_be_connected_first(harness: BusHarness) -> None:
    bus = await harness.make_bus(connect=False)
    assert not bus.connected
    with pytest.raises(BusError):
        await bus.publish("early.bird", {})
    await bus.connect()
    await bus.connect()  # idempotent
    assert bus.connected


async def test_outage_and_recovery(harness: BusHarness) -> None:
    """The server goes away (NATS: the process stops; memory: simulated) and comes back on the
    same address. Publishes during the outage do not raise and are delivered after the
    reconnect, in order; subscriptions survive; listeners hear DISCONNECTED then RECONNECTED."""
    bus = await harness.make_bus(name="main")
    other = await harness.make_bus(name="other")
    states, other_states = StateRecorder(), StateRecorder()
    bus.add_state_listener(states)
    other.add_state_listener(other_states)
    received, from_other = Recorder(), Recorder()
    await bus.subscribe("router.register", received)
    await bus.subscribe("router.unregister", from_other)
    await settle(other)

    await bus.publish("router.register", {"n": "before"})
    await received.wait_for(1)

    await harness.outage_begins()
    await states.wait_for(BusState.DISCONNECTED)
    await other_states.wait_for(BusState.DISCONNECTED)
    assert not bus.connected

    await bus.publish("router.register", {"n": "during-1"})
    await bus.publish("router.register", {"n": "during-2"})
    during_outage = Recorder()
    await bus.subscribe("router.start", during_outage)  # subscribing while away works too
    with pytest.raises(BusTimeout):
        await bus.request("router.greet", {}, timeout=0.3)

    await harness.outage_ends()
    await states.wait_for(BusState.RECONNECTED)
    await other_states.wait_for(BusState.RECONNECTED)
    assert bus.connected
    assert states.states == [BusState.DISCONNECTED, BusState.RECONNECTED]

    await bus.publish("router.register", {"n": "after"})
    await other.publish("router.unregister", {"n": "from-other"})
    await other.publish("router.start", {"n": "start"})

    got = await received.wait_for(4)
    assert [m.data["n"] for m in got] == ["before", "during-1", "during-2", "after"]
    assert (await from_other.wait_for(1))[0].data == {"n": "from-other"}
    await during_outage.wait_for(1)
    await settle(other)
    assert during_outage.data == [{"n": "start"}]


async def test_close_during_an_outage_is_prompt(harness: BusHarness) -> None:
    """Closing while the server is away drops what was buffered and does not wait for it."""
    bus = await harness.make_bus()
    states = StateRecorder()
    bus.add_state_listener(states)
    await bus.subscribe("router.register", Recorder())
    await harness.outage_begins()
    await states.wait_for(BusState.DISCONNECTED)
    await bus.publish("router.register", {"n": "lost"})

    started = time.monotonic()
    await bus.close()

    assert time.monotonic() - started < 2
    assert states.states == [BusState.DISCONNECTED, BusState.CLOSED]
    with pytest.raises(BusClosed):
        await bus.publish("router.register", {})


async def test_close_drains_running_handlers_then_refuses_work(harness: BusHarness) -> None:
    bus = await harness.make_bus()
    states = StateRecorder()
    bus.add_state_listener(states)
    started, finished = asyncio.Event(), asyncio.Event()
    handled: list[int] = []

    async def slow(message: Message) -> None:
        started.set()
        await asyncio.sleep(0.2)
        handled.append(message.data["n"])
        finished.set()

    await bus.subscribe("slow.work", slow)
    await bus.publish("slow.work", {"n": 1})
    await bus.publish("slow.work", {"n": 2})
    async with asyncio.timeout(5):
        await started.wait()

    await bus.close()

    assert handled == [1, 2]
    assert not bus.connected
    assert states.states == [BusState.CLOSED]
    with pytest.raises(BusClosed):
        await bus.publish("slow.work", {})
    with pytest.raises(BusClosed):
        await bus.request("slow.work", {}, timeout=1)
    with pytest.raises(BusClosed):
        await bus.subscribe("slow.work", slow)
    with pytest.raises(BusClosed):
        await bus.connect()
    await bus.close()  # idempotent
    assert states.states == [BusState.CLOSED]


async def test_close_lets_handlers_answer_and_fails_waiting_requests(
    harness: BusHarness,
) -> None:
    bus = await harness.make_bus()
    other = await harness.make_bus(name="other")
    arrived = asyncio.Event()

    async def answer_late(message: Message) -> None:
        arrived.set()
        await asyncio.sleep(0.2)
        await bus.respond(message, {"late": True})  # allowed while draining

    await bus.subscribe("cell.slow.rpc", answer_late)
    await other.subscribe("cell.mute.rpc", Recorder())
    await settle(other)

    answered = asyncio.create_task(other.request("cell.slow.rpc", {}, timeout=5))
    async with asyncio.timeout(5):
        await arrived.wait()
    await bus.close()
    assert (await answered).data == {"late": True}

    waiting = asyncio.create_task(other.request("cell.mute.rpc", {}, timeout=5))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await other.close()
    with pytest.raises(BusClosed):
        await waiting
    assert time.monotonic() - started < 2


async def test_factory_builds_each_kind(harness: BusHarness) -> None:
    bus = create_bus(
        harness.kind,
        harness.url,
        request_timeout=1.0,
        max_reconnect_attempts=-1,
        reconnect_wait=0.1,
        name="factory",
    )
    assert isinstance(bus, MemoryBus if harness.kind == "memory" else NatsBus)
    await bus.connect()
    try:
        received = Recorder()
        await bus.subscribe("factory.test", received)
        await bus.publish("factory.test", {"ok": 1})
        assert (await received.wait_for(1))[0].data == {"ok": 1}
    finally:
        await bus.close()
    with pytest.raises(ValueError):
        create_bus(
            "carrier-pigeon",
            "",
            request_timeout=1.0,
            max_reconnect_attempts=-1,
            reconnect_wait=0.1,
            name="x",
        )
