"""The one place a composition root turns bus settings into a `Bus`."""

from __future__ import annotations

from overcast.bus.base import Bus
from overcast.core.settings import BusSettings


def create_bus(
    kind: str,
    url: str,
    *,
    request_timeout: float,
    max_reconnect_attempts: int,
    reconnect_wait: float,
    name: str,
) -> Bus:
    """`memory` (in process; `url` and the reconnect settings are ignored) or `nats`."""
    if kind == "memory":
        from overcast.bus.memory import MemoryBus

        return MemoryBus(request_timeout=request_timeout, name=name)
    if kind == "nats":
        from overcast.bus.nats import NatsBus

        return NatsBus(
            url,
            request_timeout=request_timeout,
            max_reconnect_attempts=max_reconnect_attempts,
            reconnect_wait=reconnect_wait,
            name=name,
        )
    raise ValueError(f"unknown bus kind {kind!r} (expected 'memory' or 'nats')")


def bus_from_settings(settings: BusSettings, name: str) -> Bus:
    """The bus a process's settings describe, named `name` (in the bus's own logs)."""
    return create_bus(
        settings.kind,
        settings.url.get_secret_value(),
        request_timeout=settings.request_timeout_seconds,
        max_reconnect_attempts=settings.max_reconnect_attempts,
        reconnect_wait=settings.reconnect_wait_seconds,
        name=name,
    )
