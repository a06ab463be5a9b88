"""NatsBus connection handling that the memory bus has no counterpart for: the initial connect,
giving up after a finite number of reconnects, credentials kept out of logs and errors, and
the throwaway server's restart on the same port."""

from __future__ import annotations

import asyncio
import time

import pytest

from overcast.bus.base import BusError, BusState
from overcast.bus.nats import NatsBus, mask_url
from overcast.testing.bus_harness import Recorder, StateRecorder
from overcast.testing.nats import NatsServer, nats_binary
from overcast.testing.servers import free_port, missing_server

pytestmark = pytest.mark.nats


@pytest.fixture
def binary() -> str:
    found = nats_binary()
    if found is None:
        missing_server("nats-server")
    return found


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("nats://alice:s3cret@nats.internal:4222", "nats://***@nats.internal:4222"),
        ("nats://tok3n@nats.internal:4222", "nats://***@nats.internal:4222"),
        ("tls://a:b@[::1]:4222/", "tls://***@[::1]:4222/"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


async def test_connect_to_a_server_that_is_down_gives_up_with_a_masked_url(
    binary: str, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    bus = NatsBus(f"nats://alice:s3cret@127.0.0.1:{port}", connect_timeout=0.5, reconnect_wait=0.1)

    started = time.monotonic()
    with pytest.raises(BusError) as caught:
        await bus.connect()
    assert time.monotonic() - started < 3
    assert f"nats://***@127.0.0.1:{port}" in str(caught.value)
    assert not bus.connected

    # The caller may simply try again once the server is there.
    with NatsServer(binary, port=port):
        await bus.connect()
        assert bus.connected
        received = Recorder()
        await bus.subscribe("hello", received)
        await bus.publish("hello", {})
        await received.wait_for(1)
        await bus.close()

    output = capsys.readouterr()
    assert "s3cret" not in output.out + output.err
    assert "s3cret" not in repr(caught.value)


async def test_finite_reconnect_attempts_end_in_closed(binary: str) -> None:
    with NatsServer(binary) as server:
        bus = NatsBus(server.url, max_reconnect_attempts=2, reconnect_wait=0.05)
        await bus.connect()
        states = StateRecorder()
        bus.add_state_listener(states)
        await asyncio.to_thread(server.stop)

        await states.wait_for(BusState.CLOSED, within=10)
        assert states.states == [BusState.DISCONNECTED, BusState.CLOSED]
        assert not bus.connected
        with pytest.raises(BusError):
            await bus.publish("anything", {})
        await bus.close()


def test_server_restarts_on_the_same_port(binary: str) -> None:
    server = NatsServer(binary)
    try:
        server.start()
        url = server.url
        assert server.running
        server.restart()
        assert server.url == url
        assert server.running
        server.stop()
        assert not server.running
    finally:
        server.stop()
