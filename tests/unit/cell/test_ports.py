"""Port allocation: round robin, skipping taken and bound ports."""

from __future__ import annotations

import socket

from overcast.cell.ports import PortAllocator, port_is_free
from overcast.testing.servers import free_port


def _bound_with_free_neighbours() -> socket.socket:
    """A socket bound to a port whose next two ports are free (tried until one is found)."""
    for _ in range(100):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        bound = holder.getsockname()[1]
        if all(port_is_free("127.0.0.1", bound + n) for n in (1, 2)):
            return holder
        holder.close()
    raise AssertionError("no port with two free neighbours in 100 tries")


def test_round_robin_skipping_taken_and_bound_ports() -> None:
    with _bound_with_free_neighbours() as holder:
        bound = holder.getsockname()[1]
        allocator = PortAllocator("127.0.0.1", bound, bound + 2)
        first = allocator.allocate(taken=set())
        assert first is not None and first != bound
        second = allocator.allocate(taken={first})
        assert second not in (None, bound, first)
        assert allocator.allocate(taken={first, second}) is None  # type: ignore[arg-type]


def test_released_ports_are_not_handed_out_at_once() -> None:
    start = free_port()
    allocator = PortAllocator("127.0.0.1", start, start + 50)
    first = allocator.allocate(taken=set())
    second = allocator.allocate(taken=set())
    assert first != second
