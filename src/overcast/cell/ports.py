"""Host ports for instances (PORT / CF_INSTANCE_PORT with the process runtime)."""

from __future__ import annotations

import socket
from collections.abc import Collection


def port_is_free(host: str, port: int) -> bool:
    """Whether the port can be bound on the instance address and on loopback."""
    for address in dict.fromkeys((host, "127.0.0.1")):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                return False
    return True


class PortAllocator:
    """Hands out ports of [start, end] round-robin, so a port just released (and perhaps
    still in a router's table) is not handed out again at once."""

    def __init__(self, host: str, start: int, end: int) -> None:
        if end < start:
            raise ValueError(f"empty port range {start}-{end}")
        self.host = host
        self.start = start
        self.end = end
        self._next = start

    def allocate(self, taken: Collection[int]) -> int | None:
        size = self.end - self.start + 1
        for step in range(size):
            port = self.start + (self._next - self.start + step) % size
            if port in taken or not port_is_free(self.host, port):
                continue
            self._next = self.start + (port - self.start + 1) % size
            return port
        return None
