"""The controller's log buffer: bounds per app, LRU over apps, slow listeners, the bus
subscription (malformed payloads are dropped) and shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from overcast.bus.memory import MemoryBus
from overcast.bus.messages import LogLine
from overcast.bus.subjects import app_logs
from overcast.controller.logs import (
    MAX_LINE_CHARS,
    LogBuffer,
    StreamEnded,
    change_summary,
    unix_nanos,
)
from overcast.testing.clock import FakeClock

APP = "6f1c1e2a-0000-4000-8000-000000000001"
OTHER = "6f1c1e2a-0000-4000-8000-000000000002"


def line(text: str, app_guid: str = APP, *, stream: str = "stdout") -> LogLine:
    return LogLine.parse(
        {
            "app_guid": app_guid,
            "source": "APP/PROC/WEB/0",
            "stream": stream,
            "line": text,
            "timestamp": 1_700_000_000_000_000_000,
        }
    )


def texts(lines: list[LogLine]) -> list[str]:
    return [item.line for item in lines]


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    bus = MemoryBus()
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()


def make_buffer(bus: MemoryBus, clock: FakeClock, **bounds: int) -> LogBuffer:
    return LogBuffer(bus, clock, **bounds)


async def eventually(check: Callable[[], bool]) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_recent_lines_are_bounded_per_app_and_oldest_first(
    bus: MemoryBus, clock: FakeClock
) -> None:
    buffer = make_buffer(bus, clock, lines_per_app=3)
    for number in range(5):
        buffer.add(line(f"line {number}"))
    buffer.add(line("other app", OTHER))
    assert texts(buffer.recent(APP, 100)) == ["line 2", "line 3", "line 4"]
    assert texts(buffer.recent(APP, 2)) == ["line 3", "line 4"]
    assert texts(buffer.recent(OTHER, 100)) == ["other app"]
    assert buffer.recent("unknown", 10) == []
    assert buffer.recent(APP, 0) == []


async def test_the_app_that_logged_least_recently_is_forgotten_first(
    bus: MemoryBus, clock: FakeClock
) -> None:
    buffer = make_buffer(bus, clock, max_apps=2)
    buffer.add(line("a1", "app-a"))
    buffer.add(line("b1", "app-b"))
    buffer.add(line("a2", "app-a"))  # app-a is now the most recent
    buffer.add(line("c1", "app-c"))  # evicts app-b
    assert buffer.app_count == 2
    assert buffer.recent("app-b", 10) == []
    assert texts(buffer.recent("app-a", 10)) == ["a1", "a2"]
    assert texts(buffer.recent("app-c", 10)) == ["c1"]


async def test_very_long_lines_are_cut(bus: MemoryBus, clock: FakeClock) -> None:
    buffer = make_buffer(bus, clock)
    buffer.add(line("x" * (MAX_LINE_CHARS + 10)))
    (kept,) = buffer.recent(APP, 1)
    assert len(kept.line) == MAX_LINE_CHARS
    assert kept.line.endswith("[truncated]")


async def test_a_listener_gets_recent_lines_then_live_ones(
    bus: MemoryBus, clock: FakeClock
) -> None:
    buffer = make_buffer(bus, clock)
    for number in range(5):
        buffer.add(line(f"old {number}"))
    with buffer.listen(APP, recent=2) as listener:
        assert buffer.listener_count(APP) == 1
        buffer.add(line("new", APP))
        buffer.add(line("not mine", OTHER))
        got = [await listener.get(timeout=1) for _ in range(3)]
        assert [item.line if item else None for item in got] == ["old 3", "old 4", "new"]
        # Idle: None after the timeout (the API sends a keepalive then).
        assert await listener.get(timeout=0.01) is None
    assert buffer.listener_count() == 0


async def test_a_slow_listener_loses_lines_and_is_told_how_many(
    bus: MemoryBus, clock: FakeClock
) -> None:
    buffer = make_buffer(bus, clock, listener_queue=3)
    fast = buffer.listen(APP)
    slow = buffer.listen(APP)
    received: list[str] = []
    for number in range(10):
        buffer.add(line(f"line {number}"))
        item = await fast.get(timeout=1)  # keeps up
        assert item is not None
        received.append(item.line)
    assert received == [f"line {number}" for number in range(10)]
    assert slow.pending == 3 and slow.dropped == 7
    assert [(await slow.get(timeout=1)).line for _ in range(3)] == [  # type: ignore[union-attr]
        "line 0",
        "line 1",
        "line 2",
    ]
    buffer.add(line("line 10"))
    notice = await slow.get(timeout=1)
    assert notice is not None
    assert (notice.source, notice.stream) == ("LGR", "stderr")
    assert notice.line == "7 log lines dropped: this reader fell behind"
    assert notice.timestamp == unix_nanos(clock.now())
    after = await slow.get(timeout=1)
    assert after is not None and after.line == "line 10"
    assert slow.dropped == 0
    fast.close()
    slow.close()


async def test_the_bus_fills_the_buffer_and_malformed_payloads_are_dropped(
    bus: MemoryBus, clock: FakeClock
) -> None:
    buffer = make_buffer(bus, clock)
    await buffer.start()
    await buffer.start()  # idempotent: one subscription
    await bus.publish(app_logs(APP), {"app_guid": APP, "source": "STG"})  # no line, timestamp
    await bus.publish(app_logs(APP), {"app_guid": APP, "line": "x", "timestamp": "soon"})
    await bus.publish(app_logs(APP), line("wrong subject", OTHER).wire())
    await bus.publish(app_logs(APP), {**line("bad stream").wire(), "stream": "stdlog"})
    await bus.publish(app_logs(APP), line("hello").wire())
    await eventually(lambda: bool(buffer.recent(APP, 10)))
    assert texts(buffer.recent(APP, 10)) == ["hello"]
    assert buffer.recent(OTHER, 10) == []
    assert buffer.malformed == 4
    await buffer.stop()


async def test_publish_goes_out_on_the_bus_and_comes_back(bus: MemoryBus, clock: FakeClock) -> None:
    buffer = make_buffer(bus, clock)
    await buffer.start()
    seen: list[dict[str, object]] = []

    async def spy(message: object) -> None:
        seen.append(message.data)  # type: ignore[attr-defined]

    await bus.subscribe(app_logs(APP), spy)
    await buffer.publish(APP, "API", f"Updated app with guid {APP} ({change_summary({'a': 1})})")
    await eventually(lambda: bool(buffer.recent(APP, 1)) and bool(seen))
    (kept,) = buffer.recent(APP, 1)
    assert (kept.source, kept.stream) == ("API", "stdout")
    assert kept.line == f'Updated app with guid {APP} ({{"a": 1}})'
    assert kept.timestamp == unix_nanos(clock.now())
    assert seen[0]["line"] == kept.line
    await buffer.stop()


async def test_publish_never_raises(clock: FakeClock) -> None:
    closed = MemoryBus()
    await closed.connect()
    await closed.close()
    buffer = LogBuffer(closed, clock)
    await buffer.publish(APP, "API", "lost")  # logged, not raised


async def test_stop_ends_every_stream_and_later_listeners_end_at_once(
    bus: MemoryBus, clock: FakeClock
) -> None:
    buffer = make_buffer(bus, clock)
    await buffer.start()
    listener = buffer.listen(APP)
    buffer.add(line("before stop"))
    waiting = asyncio.create_task(buffer.listen(OTHER).get(timeout=5))
    await asyncio.sleep(0)
    await buffer.stop()
    first = await listener.get(timeout=1)
    assert first is not None and first.line == "before stop"
    with pytest.raises(StreamEnded):
        await listener.get(timeout=1)
    with pytest.raises(StreamEnded):
        await listener.get(timeout=1)  # stays ended
    with pytest.raises(StreamEnded):
        await waiting
    late = buffer.listen(APP, recent=1)
    assert (await late.get(timeout=1)).line == "before stop"  # type: ignore[union-attr]
    with pytest.raises(StreamEnded):
        await late.get(timeout=1)
    assert buffer.listener_count() == 0
    # Published lines no longer arrive.
    await bus.publish(app_logs(APP), line("after stop").wire())
    await asyncio.sleep(0.05)
    assert texts(buffer.recent(APP, 10)) == ["before stop"]


def test_bounds_must_be_positive(clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        LogBuffer(MemoryBus(), clock, lines_per_app=0)
    with pytest.raises(ValueError):
        LogBuffer(MemoryBus(), clock, listener_queue=1)
