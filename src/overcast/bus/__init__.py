"""The message bus: one protocol, two implementations (memory, nats)."""

from overcast.bus.base import (
    Bus,
    BusClosed,
    BusError,
    BusState,
    BusTimeout,
    Handler,
    Message,
    NoResponders,
    Subscription,
)

__all__ = [
    "Bus",
    "BusClosed",
    "BusError",
    "BusState",
    "BusTimeout",
    "Handler",
    "Message",
    "NoResponders",
    "Subscription",
]
