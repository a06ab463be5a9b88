"""Persistence protocols. Use cases see only these; `store.sql` implements them on SQLite and
PostgreSQL. Writes return `(before, after)` so events are built from the pair."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol, TypeVar

from overcast.models.jobs import Job, Queue, QueueStats
from overcast.models.query import ListQuery, Page
from overcast.models.resources import (
    App,
    AuditEvent,
    Build,
    Domain,
    Droplet,
    OAuthClient,
    Organization,
    Package,
    Process,
    Role,
    Route,
    RouteDestination,
    SigningKey,
    Space,
    User,
)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


Change = Callable[[T], T]


class Repo(Protocol[T]):
    async def add(self, item: T) -> T: ...

    async def get(self, guid: str) -> T | None: ...

    async def require(self, guid: str) -> T:
        """Like get, but raises NotFound."""
        ...

    async def update(self, guid: str, change: Change[T]) -> tuple[T, T]:
        """Apply `change` to the current row under a write lock; refreshes updated_at."""
        ...

    async def delete(self, guid: str) -> T | None: ...

    async def page(self, query: ListQuery) -> Page[T]: ...

    async def list_all(self, filters: Mapping[str, Sequence[str]]) -> list[T]:
        """Every match, unpaginated (internal use on bounded sets)."""
        ...

    async def guids(self, filters: Mapping[str, Sequence[str]]) -> list[str]:
        """Just the guids matching filters (for visibility sets and cascades)."""
        ...


class OrgRepo(Repo[Organization], Protocol):
    async def by_name(self, name: str) -> Organization | None: ...


class SpaceRepo(Repo[Space], Protocol):
    async def by_name(self, org_guid: str, name: str) -> Space | None: ...


class AppRepo(Repo[App], Protocol):
    async def by_name(self, space_guid: str, name: str) -> App | None: ...


class ProcessRepo(Repo[Process], Protocol):
    async def of_app(self, app_guid: str) -> list[Process]: ...

    async def by_type(self, app_guid: str, process_type: str) -> Process | None: ...


class DropletRepo(Repo[Droplet], Protocol):
    """Filters: guids, app_guids, states, space_guids, organization_guids."""


class PackageRepo(Repo[Package], Protocol):
    """Filters: guids, app_guids, states, types, space_guids, organization_guids."""


class BuildRepo(Repo[Build], Protocol):
    """Filters: guids, app_guids, package_guids, states, space_guids, organization_guids."""


class UserRepo(Repo[User], Protocol):
    async def by_username(self, username: str, origin: str = "uaa") -> User | None: ...


class RoleRepo(Repo[Role], Protocol):
    async def of_user(self, user_guid: str) -> list[Role]: ...


class DomainRepo(Repo[Domain], Protocol):
    async def by_name(self, name: str) -> Domain | None: ...


class RouteRepo(Repo[Route], Protocol):
    """Filters: guids, hosts, paths, domain_guids, space_guids, organization_guids, app_guids
    (routes with a destination of one of these apps)."""

    async def by_address(self, domain_guid: str, host: str, path: str) -> Route | None:
        """The route at host.domain/path (host and path compared ignoring case)."""
        ...


class DestinationRepo(Repo[RouteDestination], Protocol):
    """Filters: guids, route_guids, app_guids."""

    async def of_routes(self, route_guids: Sequence[str]) -> list[RouteDestination]:
        """The destinations of these routes, oldest first."""
        ...


class EventRepo(Protocol):
    async def add(self, event: AuditEvent) -> AuditEvent: ...

    async def get(self, guid: str) -> AuditEvent | None: ...

    async def page(self, query: ListQuery) -> Page[AuditEvent]: ...


class JobRepo(Repo[Job], Protocol):
    async def find_pending(self, operation: str, target_key: str, dedupe_key: str) -> Job | None:
        """An unfinished job for the same operation, target and key, if any."""
        ...

    async def claim(self, owner: str, now: datetime, lease_until: datetime) -> Job | None:
        """Take the oldest runnable job whose queue is under its concurrency limit and whose
        target has no other job running; a job with an expired lease is runnable again."""
        ...

    async def write_as_owner(self, job: Job, owner: str, now: datetime) -> Job | None:
        """Store `job` only if `owner` still holds an unexpired lease on the stored row (the
        written values may drop the lease); None otherwise."""
        ...

    async def expire_leases_of(self, owner_prefix: str, now: datetime) -> int:
        """Expire the leases of running jobs whose owner starts with the prefix."""
        ...

    async def queue_stats(self, now: datetime) -> list[QueueStats]: ...


class QueueRepo(Protocol):
    async def ensure(self, name: str, concurrency: int) -> Queue:
        """Create the queue with this limit unless it exists (then keep the stored limit)."""
        ...

    async def get(self, name: str) -> Queue | None: ...

    async def set_concurrency(self, name: str, concurrency: int) -> tuple[Queue, Queue]: ...

    async def all(self) -> list[Queue]: ...


class ClientRepo(Protocol):
    async def add(self, client: OAuthClient) -> OAuthClient: ...

    async def get(self, client_id: str) -> OAuthClient | None: ...

    async def delete(self, client_id: str) -> OAuthClient | None: ...

    async def all(self) -> list[OAuthClient]: ...


class KeyRepo(Protocol):
    async def current(self) -> SigningKey | None: ...

    async def all(self) -> list[SigningKey]: ...

    async def add(self, key: SigningKey) -> SigningKey: ...


class Tx(Protocol):
    """One transaction's view of every repository."""

    @property
    def orgs(self) -> OrgRepo: ...

    @property
    def spaces(self) -> SpaceRepo: ...

    @property
    def apps(self) -> AppRepo: ...

    @property
    def processes(self) -> ProcessRepo: ...

    @property
    def droplets(self) -> DropletRepo: ...

    @property
    def packages(self) -> PackageRepo: ...

    @property
    def builds(self) -> BuildRepo: ...

    @property
    def users(self) -> UserRepo: ...

    @property
    def roles(self) -> RoleRepo: ...

    @property
    def domains(self) -> DomainRepo: ...

    @property
    def routes(self) -> RouteRepo: ...

    @property
    def destinations(self) -> DestinationRepo: ...

    @property
    def events(self) -> EventRepo: ...

    @property
    def jobs(self) -> JobRepo: ...

    @property
    def queues(self) -> QueueRepo: ...

    @property
    def clients(self) -> ClientRepo: ...

    @property
    def keys(self) -> KeyRepo: ...


class Store(Protocol):
    def write(self) -> AbstractAsyncContextManager[Tx]:
        """A read-write transaction; committed when the block exits without an error."""
        ...

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """A read-only transaction (never blocks writers on SQLite's WAL)."""
        ...

    @property
    def dialect(self) -> str: ...

    async def close(self) -> None: ...
