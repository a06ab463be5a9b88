"""What the router's parts share: an endpoint (one instance's address), a route as the data
plane sees it (the endpoints behind a host and path prefix), and one request's access record.

The route table (`table.py`) produces `Route`s; the data plane (`proxy.py`) only ever asks
`resolve(host, path) -> Route | None` and reports an `AccessRecord` per request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

LoadBalancing = Literal["round-robin", "least-connection"]


@dataclass(frozen=True)
class Endpoint:
    """One instance behind a route. `address` ("host:port") identifies it to the data plane
    (connection pools, connection counts, ineligibility)."""

    host: str
    port: int
    app_guid: str = ""
    process_guid: str = ""
    instance_guid: str = ""
    index: int = 0
    # The cell that registered it (its endpoints are withdrawn together when it is lost).
    cell_id: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Route:
    """A host and path prefix with its live endpoints, as the table resolved a request."""

    host: str
    path: str
    endpoints: tuple[Endpoint, ...]
    load_balancing: LoadBalancing = "round-robin"


@dataclass(slots=True)
class AccessRecord:
    """One proxied (or refused) request, for the access log and the app's `RTR` lines. Made
    once per request, so a plain slotted class (a frozen one costs three times as much)."""

    request_id: str
    client: str
    method: str
    target: str
    host: str
    status: int
    bytes_received: int
    bytes_sent: int
    started_at: float  # unix seconds
    duration_seconds: float
    user_agent: str = ""
    referer: str = ""
    endpoint: Endpoint | None = None
    # Why the router answered itself (no route, no endpoint answered, ...), when it did.
    error: str | None = None


Resolver = Callable[[str, str], Route | None]
AccessSink = Callable[[AccessRecord], None]
