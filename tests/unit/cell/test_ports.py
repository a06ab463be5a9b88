"""Port allocation: round robin, skipping taken and bound ports."""

from __future__ import annotations

import socket

import pytest

from overcast.cell.ports import PortAllocator, port_is_free
from overcast.testing.servers import free_port


def test_round_robin_skipping_taken_and_bound_ports() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        bound = holder.getsockname()[1]
        if not all(port_is_free("127.0.0.1", bound + n) for n in (1, 2)):
            pytest.skip("the neighbouring ports are in use")
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
