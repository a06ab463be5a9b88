"""The route table (DESIGN.md section 10): (host, path prefix) -> live endpoints. Pure: no I/O,
no clock of its own (every change takes `now`), so it is unit-tested exhaustively.

- A uri is "host.domain" or "host.domain/path" (CF's form); hosts are lower-cased, a
  "*.domain" host answers for any one-or-more-label subdomain without a route of its own.
- The longest path prefix wins, on whole segments: "/api" serves "/api" and "/api/v1",
  never "/apix".
- Each endpoint carries a modification tag `(guid, index)`: from the same source, only a higher
  or equal index applies; an unregister leaves a tombstone so a late, older register cannot
  bring the endpoint back.
- A cell judged lost has its endpoints withdrawn at once, each tombstoned with its tag for
  `lost_hold_seconds`: when the cell comes back, its registrations of the same instance state
  cannot bring them back meanwhile (the health service stops its stale copies); only news
  can, such as a newer state of the instance.
- Endpoints not re-registered within their stale threshold are pruned, except while pruning
  is suspended (the bus is down: a bus outage must never empty the table); resuming freshens
  every entry first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from overcast.router.endpoints import Endpoint, LoadBalancing, Route

LOAD_BALANCING: frozenset[str] = frozenset({"round-robin", "least-connection"})


@dataclass(frozen=True)
class Tag:
    guid: str
    index: int

    def not_older_than(self, other: Tag) -> bool:
        """Whether a message with this tag may replace state written with `other`."""
        return self.guid != other.guid or self.index >= other.index


@dataclass
class _Entry:
    endpoint: Endpoint
    tag: Tag
    updated_at: float
    stale_threshold: float


@dataclass
class _Pool:
    host: str
    path: str
    entries: dict[str, _Entry] = field(default_factory=dict)
    load_balancing: LoadBalancing = "round-robin"
    # The Route handed out, rebuilt only when the pool changes (lookups are the hot path).
    cached: Route | None = None

    def route(self) -> Route:
        if self.cached is None:
            endpoints = tuple(
                entry.endpoint for _, entry in sorted(self.entries.items(), key=lambda kv: kv[0])
            )
            self.cached = Route(self.host, self.path, endpoints, self.load_balancing)
        return self.cached


def split_uri(uri: str) -> tuple[str, str]:
    """("host.domain", "/path") of a uri; the path without a trailing slash ("" for none).
    ValueError for what cannot be a route."""
    text = uri.strip().lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    host, slash, path = text.partition("/")
    host = host.split(":", 1)[0].rstrip(".")
    if not host or any(ch.isspace() for ch in host) or "?" in path or "#" in path:
        raise ValueError(f"not a route uri: {uri!r}")
    path = ("/" + path).rstrip("/") if slash else ""
    return host, path


def _prefixes(path: str) -> Iterator[str]:
    """ "/a/b/c" -> "/a/b/c", "/a/b", "/a", "": the route paths that could serve it."""
    current = path.rstrip("/")
    while current:
        yield current
        current = current.rsplit("/", 1)[0]
    yield ""


class RouteTable:
    def __init__(
        self, prune_threshold_seconds: float, lost_hold_seconds: float | None = None
    ) -> None:
        self.prune_threshold = prune_threshold_seconds
        self.lost_hold = max(lost_hold_seconds or 0.0, prune_threshold_seconds)
        self._pools: dict[str, dict[str, _Pool]] = {}
        # (host, path, address) -> (tag, until): what was unregistered or withdrawn, for a while.
        self._tombstones: dict[tuple[str, str, str], tuple[Tag, float]] = {}
        # Cell id -> the tombstones its withdrawal left, with their tags (readmit_cell).
        self._withdrawn: dict[str, dict[tuple[str, str, str], Tag]] = {}
        self.pruning_suspended = False

    # --- changes ----------------------------------------------------------------------------

    def register(
        self,
        uri: str,
        endpoint: Endpoint,
        tag: Tag,
        now: float,
        *,
        stale_threshold: float | None = None,
        load_balancing: str | None = None,
    ) -> bool:
        """Add or refresh an endpoint; False when the message was older than what is known
        (or the uri is not a route)."""
        try:
            host, path = split_uri(uri)
        except ValueError:
            return False
        address = endpoint.address
        buried = self._tombstones.get((host, path, address))
        if buried is not None and not _strictly_newer(tag, buried[0]):
            return False
        pools = self._pools.setdefault(host, {})
        pool = pools.get(path)
        if pool is None:
            pool = pools[path] = _Pool(host, path)
        current = pool.entries.get(address)
        if current is not None and not tag.not_older_than(current.tag):
            return False
        threshold = min(stale_threshold or self.prune_threshold, self.prune_threshold)
        if current is None or current.endpoint != endpoint or current.tag != tag:
            pool.cached = None
        pool.entries[address] = _Entry(endpoint, tag, now, threshold)
        if load_balancing in LOAD_BALANCING and load_balancing != pool.load_balancing:
            pool.load_balancing = load_balancing  # type: ignore[assignment]
            pool.cached = None
        self._tombstones.pop((host, path, address), None)
        return True

    def unregister(self, uri: str, address: str, tag: Tag, now: float) -> bool:
        """Remove an endpoint unless the table holds a newer registration of it."""
        try:
            host, path = split_uri(uri)
        except ValueError:
            return False
        pool = self._pools.get(host, {}).get(path)
        current = pool.entries.get(address) if pool else None
        if current is not None and (current.tag.guid != tag.guid or current.tag.index > tag.index):
            return False
        key = (host, path, address)
        buried = self._tombstones.get(key)
        if buried is None or tag.not_older_than(buried[0]):
            self._tombstones[key] = (tag, now + self.prune_threshold)
        if pool is None or current is None:
            return False
        del pool.entries[address]
        pool.cached = None
        if not pool.entries:
            self._drop(host, path)
        return True

    def withdraw_cell(self, cell_id: str, now: float) -> list[tuple[str, Endpoint]]:
        """Remove every endpoint `cell_id` registered, tombstoned with its tag; what went, as
        (uri, endpoint)."""
        if not cell_id:
            return []
        removed: list[tuple[str, Endpoint]] = []
        for host, pools in list(self._pools.items()):
            for path, pool in list(pools.items()):
                for address, entry in list(pool.entries.items()):
                    if entry.endpoint.cell_id != cell_id:
                        continue
                    del pool.entries[address]
                    pool.cached = None
                    self._tombstones[(host, path, address)] = (entry.tag, now + self.lost_hold)
                    self._withdrawn.setdefault(cell_id, {})[(host, path, address)] = entry.tag
                    removed.append((host + path, entry.endpoint))
                if not pool.entries:
                    self._drop(host, path)
        return removed

    def readmit_cell(self, cell_id: str) -> int:
        """Lift the tombstones `cell_id`'s withdrawal left (those not replaced since by a newer
        unregistration): its next registrations are taken again. How many were lifted."""
        lifted = 0
        for key, tag in self._withdrawn.pop(cell_id, {}).items():
            buried = self._tombstones.get(key)
            if buried is not None and buried[0] == tag:
                del self._tombstones[key]
                lifted += 1
        return lifted

    def _drop(self, host: str, path: str) -> None:
        pools = self._pools.get(host)
        if pools is None:
            return
        pools.pop(path, None)
        if not pools:
            del self._pools[host]

    # --- time -------------------------------------------------------------------------------

    def prune(self, now: float) -> list[tuple[str, Endpoint]]:
        """Forget endpoints past their stale threshold (none while suspended); what went, as
        (uri, endpoint)."""
        if self.pruning_suspended:
            return []
        removed: list[tuple[str, Endpoint]] = []
        for host, pools in list(self._pools.items()):
            for path, pool in list(pools.items()):
                for address, entry in list(pool.entries.items()):
                    if now - entry.updated_at > entry.stale_threshold:
                        del pool.entries[address]
                        pool.cached = None
                        removed.append((host + path, entry.endpoint))
                if not pool.entries:
                    self._drop(host, path)
        for key, (_, until) in list(self._tombstones.items()):
            if now > until:
                del self._tombstones[key]
        return removed

    def suspend_pruning(self) -> None:
        self.pruning_suspended = True

    def resume_pruning(self, now: float) -> None:
        """Every entry counts as just refreshed: the cells' next round has a full threshold to
        arrive in."""
        for pools in self._pools.values():
            for pool in pools.values():
                for entry in pool.entries.values():
                    entry.updated_at = now
        self.pruning_suspended = False

    # --- reads ------------------------------------------------------------------------------

    def lookup(self, host: str, path: str) -> Route | None:
        """The route serving a request: the host (lower-cased, port dropped) exactly, else the
        nearest wildcard; then the longest path prefix. None when nothing serves it."""
        name = host.lower().split(":", 1)[0].rstrip(".")
        pools = self._pools.get(name)
        if pools is None:
            pools = self._wildcard(name)
            if pools is None:
                return None
        request_path = path.split("?", 1)[0].lower()
        for prefix in _prefixes(request_path):
            pool = pools.get(prefix)
            if pool is not None:
                return pool.route()
        return None

    def _wildcard(self, name: str) -> dict[str, _Pool] | None:
        labels = name.split(".")
        for start in range(1, len(labels)):
            pools = self._pools.get("*." + ".".join(labels[start:]))
            if pools is not None:
                return pools
        return None

    def uris(self) -> list[str]:
        return sorted(host + path for host, pools in self._pools.items() for path in pools)

    def endpoint_count(self) -> int:
        return sum(len(pool.entries) for pools in self._pools.values() for pool in pools.values())

    def endpoints_of(self, uri: str) -> list[Endpoint]:
        host, path = split_uri(uri)
        pool = self._pools.get(host, {}).get(path)
        return list(pool.route().endpoints) if pool else []


def _strictly_newer(tag: Tag, buried: Tag) -> bool:
    return tag.guid != buried.guid or tag.index > buried.index
