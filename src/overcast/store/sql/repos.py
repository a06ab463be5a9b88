"""SQL repositories: one generic implementation of the CRUD and list protocol, specialised
by table, row mapping and the filters each resource accepts."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from overcast.core.clock import Clock
from overcast.models.errors import NotFound, Uniqueness, Unprocessable
from overcast.models.jobs import Job, Queue, QueueStats
from overcast.models.lifecycle import JobState
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
from overcast.store.base import Change
from overcast.store.sql import mapping, tables

T = TypeVar("T")
Filter = Callable[[Sequence[str]], ColumnElement[bool]]

# Claims on PostgreSQL serialise on this advisory lock: concurrency limits and "one job per
# target" need a consistent view of what is running, which row locks alone cannot give.
_CLAIM_LOCK_KEY = 0x0C7A57


def _in(column: Any) -> Filter:
    def build(values: Sequence[str]) -> ColumnElement[bool]:
        return column.in_(list(values)) if values else false()

    return build


def _in_lower(column: Any) -> Filter:
    def build(values: Sequence[str]) -> ColumnElement[bool]:
        return column.in_([v.lower() for v in values]) if values else false()

    return build


def _subquery(column: Any, sub_select: Callable[[Sequence[str]], Any]) -> Filter:
    def build(values: Sequence[str]) -> ColumnElement[bool]:
        return column.in_(sub_select(values)) if values else false()

    return build


def _translate_integrity(error: IntegrityError, unique_detail: str) -> Exception:
    message = str(error.orig).lower()
    if "unique" in message or "duplicate" in message:
        return Uniqueness(unique_detail)
    if "foreign key" in message:
        return Unprocessable("A related object does not exist (it may have just been deleted)")
    return Unprocessable("The change conflicts with stored data")


class SqlRepo(Generic[T]):
    table: ClassVar[Table]
    kind: ClassVar[str]
    filters: ClassVar[Mapping[str, Filter]] = {}
    order_columns: ClassVar[frozenset[str]] = frozenset({"created_at", "updated_at"})

    def __init__(self, conn: AsyncConnection, clock: Clock, dialect: str) -> None:
        self.conn = conn
        self.clock = clock
        self.dialect = dialect

    # Subclasses give the mapping.
    def to_row(self, item: T) -> dict[str, Any]:
        raise NotImplementedError

    def from_row(self, row: Mapping[Any, Any]) -> T:
        raise NotImplementedError

    def unique_detail(self, item: T) -> str:
        return f"{self.kind} already exists"

    @property
    def key(self) -> Any:
        return self.table.c.guid

    async def add(self, item: T) -> T:
        try:
            await self.conn.execute(insert(self.table).values(self.to_row(item)))
        except IntegrityError as error:
            raise _translate_integrity(error, self.unique_detail(item)) from None
        return item

    async def get(self, guid: str) -> T | None:
        row = (await self.conn.execute(select(self.table).where(self.key == guid))).mappings()
        found = row.first()
        return self.from_row(found) if found else None

    async def require(self, guid: str) -> T:
        item = await self.get(guid)
        if item is None:
            raise NotFound.of(self.kind)
        return item

    async def _get_for_update(self, guid: str) -> T | None:
        statement = select(self.table).where(self.key == guid)
        if self.dialect == "postgresql":
            statement = statement.with_for_update()
        found = (await self.conn.execute(statement)).mappings().first()
        return self.from_row(found) if found else None

    async def update(self, guid: str, change: Change[T]) -> tuple[T, T]:
        before = await self._get_for_update(guid)
        if before is None:
            raise NotFound.of(self.kind)
        after = change(before)
        if after == before:
            return before, before
        if hasattr(after, "updated_at"):
            after = dataclasses.replace(after, updated_at=self.clock.now())  # type: ignore[type-var]
        row = self.to_row(after)
        try:
            await self.conn.execute(update(self.table).where(self.key == guid).values(row))
        except IntegrityError as error:
            raise _translate_integrity(error, self.unique_detail(after)) from None
        return before, after

    async def delete(self, guid: str) -> T | None:
        before = await self._get_for_update(guid)
        if before is not None:
            try:
                await self.conn.execute(delete(self.table).where(self.key == guid))
            except IntegrityError:
                raise Unprocessable(
                    f"{self.kind} still has dependent objects; delete them first"
                ) from None
        return before

    def _where(self, filters: Mapping[str, Sequence[str]]) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        for name, values in filters.items():
            build = self.filters.get(name)
            if build is None:
                raise ValueError(f"{self.kind} has no filter {name!r}")
            clauses.append(build(values))
        return clauses

    def _timestamp_clauses(
        self, comparisons: Sequence[tuple[str, str, datetime]]
    ) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        for column_name, operator, value in comparisons:
            column = self.table.c[column_name]
            clauses.append(
                {
                    "lt": column < value,
                    "lte": column <= value,
                    "gt": column > value,
                    "gte": column >= value,
                }[operator]
            )
        return clauses

    async def page(self, query: ListQuery) -> Page[T]:
        clauses = [*self._where(query.filters), *self._timestamp_clauses(query.timestamps)]
        condition = and_(*clauses) if clauses else None
        count_statement = select(func.count()).select_from(self.table)
        statement: Select[Any] = select(self.table)
        if condition is not None:
            count_statement = count_statement.where(condition)
            statement = statement.where(condition)
        total = (await self.conn.execute(count_statement)).scalar_one()
        if query.order_by not in self.order_columns:
            raise ValueError(f"{self.kind} cannot be ordered by {query.order_by!r}")
        order_column = self.table.c[query.order_by]
        tie_breaker = self.table.c.id if "id" in self.table.c else self.key
        if query.descending:
            statement = statement.order_by(order_column.desc(), tie_breaker.desc())
        else:
            statement = statement.order_by(order_column, tie_breaker)
        statement = statement.offset((query.page - 1) * query.per_page).limit(query.per_page)
        rows = (await self.conn.execute(statement)).mappings().all()
        return Page(items=[self.from_row(row) for row in rows], total=int(total))

    async def list_all(self, filters: Mapping[str, Sequence[str]]) -> list[T]:
        clauses = self._where(filters)
        statement = select(self.table)
        if clauses:
            statement = statement.where(and_(*clauses))
        rows = (await self.conn.execute(statement.order_by(self.table.c.id))).mappings().all()
        return [self.from_row(row) for row in rows]

    async def guids(self, filters: Mapping[str, Sequence[str]]) -> list[str]:
        clauses = self._where(filters)
        statement = select(self.key)
        if clauses:
            statement = statement.where(and_(*clauses))
        return [row[0] for row in (await self.conn.execute(statement)).all()]

    async def _one_where(self, *clauses: ColumnElement[bool]) -> T | None:
        found = (await self.conn.execute(select(self.table).where(*clauses))).mappings().first()
        return self.from_row(found) if found else None


_orgs, _spaces, _apps = tables.organizations, tables.spaces, tables.apps


def _spaces_of_orgs(values: Sequence[str]) -> Any:
    return select(_spaces.c.guid).where(_spaces.c.org_guid.in_(list(values)))


def _apps_of_spaces(values: Sequence[str]) -> Any:
    return select(_apps.c.guid).where(_apps.c.space_guid.in_(list(values)))


def _apps_of_orgs(values: Sequence[str]) -> Any:
    return select(_apps.c.guid).where(_apps.c.space_guid.in_(_spaces_of_orgs(values)))


class SqlOrgRepo(SqlRepo[Organization]):
    table = _orgs
    kind = "Organization"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_orgs.c.guid),
        "names": _in_lower(_orgs.c.name_lower),
    }
    order_columns = frozenset({"created_at", "updated_at", "name"})

    def to_row(self, item: Organization) -> dict[str, Any]:
        return mapping.org_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> Organization:
        return mapping.org_from_row(row)

    def unique_detail(self, item: Organization) -> str:
        return f"Organization '{item.name}' already exists."

    async def by_name(self, name: str) -> Organization | None:
        return await self._one_where(_orgs.c.name_lower == name.lower())


class SqlSpaceRepo(SqlRepo[Space]):
    table = _spaces
    kind = "Space"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_spaces.c.guid),
        "names": _in_lower(_spaces.c.name_lower),
        "organization_guids": _in(_spaces.c.org_guid),
    }
    order_columns = frozenset({"created_at", "updated_at", "name"})

    def to_row(self, item: Space) -> dict[str, Any]:
        return mapping.space_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> Space:
        return mapping.space_from_row(row)

    def unique_detail(self, item: Space) -> str:
        return f"Space '{item.name}' already exists in this organization."

    async def by_name(self, org_guid: str, name: str) -> Space | None:
        return await self._one_where(
            _spaces.c.org_guid == org_guid, _spaces.c.name_lower == name.lower()
        )


class SqlAppRepo(SqlRepo[App]):
    table = _apps
    kind = "App"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_apps.c.guid),
        "names": _in_lower(_apps.c.name_lower),
        "space_guids": _in(_apps.c.space_guid),
        "organization_guids": _subquery(_apps.c.space_guid, _spaces_of_orgs),
        "stacks": _in(_apps.c.stack),
        "lifecycle_type": _in(_apps.c.lifecycle_type),
        "states": _in(_apps.c.state),
    }
    order_columns = frozenset({"created_at", "updated_at", "name", "state"})

    def to_row(self, item: App) -> dict[str, Any]:
        return mapping.app_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> App:
        return mapping.app_from_row(row)

    def unique_detail(self, item: App) -> str:
        return f"App with the name '{item.name}' already exists."

    async def by_name(self, space_guid: str, name: str) -> App | None:
        return await self._one_where(
            _apps.c.space_guid == space_guid, _apps.c.name_lower == name.lower()
        )


_processes = tables.processes


class SqlProcessRepo(SqlRepo[Process]):
    table = _processes
    kind = "Process"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_processes.c.guid),
        "types": _in(_processes.c.type),
        "app_guids": _in(_processes.c.app_guid),
        "space_guids": _subquery(_processes.c.app_guid, _apps_of_spaces),
        "organization_guids": _subquery(_processes.c.app_guid, _apps_of_orgs),
    }

    def to_row(self, item: Process) -> dict[str, Any]:
        return mapping.process_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> Process:
        return mapping.process_from_row(row)

    def unique_detail(self, item: Process) -> str:
        return f"The app already has a process of type '{item.type}'."

    async def of_app(self, app_guid: str) -> list[Process]:
        statement = (
            select(_processes)
            .where(_processes.c.app_guid == app_guid)
            .order_by(_processes.c.created_at, _processes.c.id)
        )
        rows = (await self.conn.execute(statement)).mappings().all()
        return [self.from_row(row) for row in rows]

    async def by_type(self, app_guid: str, process_type: str) -> Process | None:
        return await self._one_where(
            _processes.c.app_guid == app_guid, _processes.c.type == process_type
        )


_droplets = tables.droplets


class SqlDropletRepo(SqlRepo[Droplet]):
    table = _droplets
    kind = "Droplet"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_droplets.c.guid),
        "app_guids": _in(_droplets.c.app_guid),
        "states": _in(_droplets.c.state),
        "space_guids": _subquery(_droplets.c.app_guid, _apps_of_spaces),
        "organization_guids": _subquery(_droplets.c.app_guid, _apps_of_orgs),
    }

    def to_row(self, item: Droplet) -> dict[str, Any]:
        return mapping.droplet_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> Droplet:
        return mapping.droplet_from_row(row)


_packages = tables.packages


class SqlPackageRepo(SqlRepo[Package]):
    table = _packages
    kind = "Package"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_packages.c.guid),
        "app_guids": _in(_packages.c.app_guid),
        "states": _in(_packages.c.state),
        "types": _in(_packages.c.type),
        "space_guids": _subquery(_packages.c.app_guid, _apps_of_spaces),
        "organization_guids": _subquery(_packages.c.app_guid, _apps_of_orgs),
    }

    def to_row(self, item: Package) -> dict[str, Any]:
        return mapping.package_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> Package:
        return mapping.package_from_row(row)


_builds = tables.builds


class SqlBuildRepo(SqlRepo[Build]):
    table = _builds
    kind = "Build"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_builds.c.guid),
        "app_guids": _in(_builds.c.app_guid),
        "package_guids": _in(_builds.c.package_guid),
        "states": _in(_builds.c.state),
        "space_guids": _subquery(_builds.c.app_guid, _apps_of_spaces),
        "organization_guids": _subquery(_builds.c.app_guid, _apps_of_orgs),
    }

    def to_row(self, item: Build) -> dict[str, Any]:
        return mapping.build_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> Build:
        return mapping.build_from_row(row)


_users = tables.users


class SqlUserRepo(SqlRepo[User]):
    table = _users
    kind = "User"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_users.c.guid),
        "usernames": _in_lower(_users.c.username_lower),
        "origins": _in(_users.c.origin),
    }

    def to_row(self, item: User) -> dict[str, Any]:
        return mapping.user_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> User:
        return mapping.user_from_row(row)

    def unique_detail(self, item: User) -> str:
        return f"User '{item.username}' with origin '{item.origin}' already exists."

    async def by_username(self, username: str, origin: str = "uaa") -> User | None:
        return await self._one_where(
            _users.c.username_lower == username.lower(), _users.c.origin == origin
        )


_roles = tables.roles


class SqlRoleRepo(SqlRepo[Role]):
    table = _roles
    kind = "Role"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_roles.c.guid),
        "types": _in(_roles.c.type),
        "user_guids": _in(_roles.c.user_guid),
        "organization_guids": _in(_roles.c.org_guid),
        "space_guids": _in(_roles.c.space_guid),
        # Roles in these orgs, or in spaces of these orgs: what an org member may see.
        "scoped_organization_guids": lambda values: (
            or_(
                _roles.c.org_guid.in_(list(values)),
                _roles.c.space_guid.in_(_spaces_of_orgs(values)),
            )
            if values
            else false()
        ),
    }

    def to_row(self, item: Role) -> dict[str, Any]:
        return mapping.role_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> Role:
        return mapping.role_from_row(row)

    def unique_detail(self, item: Role) -> str:
        return f"User already has '{item.type.value}' role."

    async def of_user(self, user_guid: str) -> list[Role]:
        rows = (
            (await self.conn.execute(select(_roles).where(_roles.c.user_guid == user_guid)))
            .mappings()
            .all()
        )
        return [self.from_row(row) for row in rows]


_domains = tables.domains


class SqlDomainRepo(SqlRepo[Domain]):
    table = _domains
    kind = "Domain"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_domains.c.guid),
        "names": _in_lower(_domains.c.name_lower),
        "organization_guids": _in(_domains.c.org_guid),
        # Shared domains plus private domains owned by these orgs.
        "usable_by_organization_guids": lambda values: or_(
            _domains.c.org_guid.is_(None), _domains.c.org_guid.in_(list(values))
        ),
    }
    order_columns = frozenset({"created_at", "updated_at", "name"})

    def to_row(self, item: Domain) -> dict[str, Any]:
        return mapping.domain_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> Domain:
        return mapping.domain_from_row(row)

    def unique_detail(self, item: Domain) -> str:
        return f"The domain name '{item.name}' is already in use."

    async def by_name(self, name: str) -> Domain | None:
        return await self._one_where(_domains.c.name_lower == name.lower())


_routes = tables.routes
_destinations = tables.route_destinations


def _routes_of_apps(values: Sequence[str]) -> Any:
    return select(_destinations.c.route_guid).where(_destinations.c.app_guid.in_(list(values)))


class SqlRouteRepo(SqlRepo[Route]):
    table = _routes
    kind = "Route"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_routes.c.guid),
        "hosts": _in_lower(_routes.c.host),
        "paths": _in_lower(_routes.c.path_lower),
        "domain_guids": _in(_routes.c.domain_guid),
        "space_guids": _in(_routes.c.space_guid),
        "organization_guids": _subquery(_routes.c.space_guid, _spaces_of_orgs),
        "app_guids": _subquery(_routes.c.guid, _routes_of_apps),
    }

    def to_row(self, item: Route) -> dict[str, Any]:
        return mapping.route_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> Route:
        return mapping.route_from_row(row)

    def unique_detail(self, item: Route) -> str:
        return "Route already exists."

    async def by_address(self, domain_guid: str, host: str, path: str) -> Route | None:
        return await self._one_where(
            _routes.c.domain_guid == domain_guid,
            _routes.c.host == host.lower(),
            _routes.c.path_lower == path.lower(),
        )


class SqlDestinationRepo(SqlRepo[RouteDestination]):
    table = _destinations
    kind = "Destination"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_destinations.c.guid),
        "route_guids": _in(_destinations.c.route_guid),
        "app_guids": _in(_destinations.c.app_guid),
    }

    def to_row(self, item: RouteDestination) -> dict[str, Any]:
        return mapping.destination_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> RouteDestination:
        return mapping.destination_from_row(row)

    def unique_detail(self, item: RouteDestination) -> str:
        return "The route already has this destination."

    async def of_routes(self, route_guids: Sequence[str]) -> list[RouteDestination]:
        if not route_guids:
            return []
        statement = (
            select(_destinations)
            .where(_destinations.c.route_guid.in_(list(route_guids)))
            .order_by(_destinations.c.created_at, _destinations.c.id)
        )
        rows = (await self.conn.execute(statement)).mappings().all()
        return [self.from_row(row) for row in rows]


_events = tables.audit_events


class SqlEventRepo(SqlRepo[AuditEvent]):
    table = _events
    kind = "Audit event"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_events.c.guid),
        "types": _in(_events.c.type),
        "target_guids": _in(_events.c.target_guid),
        "space_guids": _in(_events.c.space_guid),
        "organization_guids": _in(_events.c.org_guid),
        # Given visible space and org guids: events of those spaces, and org-level events (no
        # space) of those orgs.
        "visible_in": lambda values: (
            or_(
                _events.c.space_guid.in_(list(values)),
                and_(_events.c.space_guid.is_(None), _events.c.org_guid.in_(list(values))),
            )
            if values
            else false()
        ),
    }

    def to_row(self, item: AuditEvent) -> dict[str, Any]:
        return mapping.event_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> AuditEvent:
        return mapping.event_from_row(row)


_jobs = tables.jobs
_queues = tables.job_queues


class SqlJobRepo(SqlRepo[Job]):
    table = _jobs
    kind = "Job"
    filters: ClassVar[Mapping[str, Filter]] = {
        "guids": _in(_jobs.c.guid),
        "states": _in(_jobs.c.state),
        "operations": _in(_jobs.c.operation),
        "queues": _in(_jobs.c.queue),
        "target_guids": _in(_jobs.c.target_guid),
    }

    def to_row(self, item: Job) -> dict[str, Any]:
        return mapping.job_to_row(item)

    def from_row(self, row: Mapping[Any, Any]) -> Job:
        return mapping.job_from_row(row)

    async def find_pending(self, operation: str, target_key: str, dedupe_key: str) -> Job | None:
        unfinished = [JobState.QUEUED.value, JobState.RUNNING.value, JobState.WAITING.value]
        statement = (
            select(_jobs)
            .where(
                _jobs.c.operation == operation,
                _jobs.c.target_key == target_key,
                _jobs.c.dedupe_key == dedupe_key,
                _jobs.c.state.in_(unfinished),
            )
            .order_by(_jobs.c.id)
        )
        found = (await self.conn.execute(statement)).mappings().first()
        return self.from_row(found) if found else None

    async def _running(self, now: datetime) -> list[tuple[str, str]]:
        statement = select(_jobs.c.queue, _jobs.c.target_key).where(
            _jobs.c.state == JobState.RUNNING.value, _jobs.c.lease_expires_at > now
        )
        return [(row[0], row[1]) for row in (await self.conn.execute(statement)).all()]

    async def _runnable(self, now: datetime, limit: int) -> list[Job]:
        ready_at = or_(_jobs.c.run_after.is_(None), _jobs.c.run_after <= now)
        statement = (
            select(_jobs)
            .where(
                or_(
                    and_(_jobs.c.state == JobState.QUEUED.value, ready_at),
                    and_(_jobs.c.state == JobState.WAITING.value, ready_at),
                    and_(
                        _jobs.c.state == JobState.RUNNING.value,
                        or_(_jobs.c.lease_expires_at.is_(None), _jobs.c.lease_expires_at <= now),
                    ),
                )
            )
            .order_by(_jobs.c.created_at, _jobs.c.id)
            .limit(limit)
        )
        rows = (await self.conn.execute(statement)).mappings().all()
        return [self.from_row(row) for row in rows]

    async def claim(self, owner: str, now: datetime, lease_until: datetime) -> Job | None:
        if self.dialect == "postgresql":
            await self.conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CLAIM_LOCK_KEY}
            )
        limits = {
            row[0]: row[1]
            for row in (await self.conn.execute(select(_queues.c.name, _queues.c.concurrency)))
        }
        running = await self._running(now)
        busy_queues = Counter(queue for queue, _ in running)
        busy_targets = {target for _, target in running}
        for job in await self._runnable(now, limit=200):
            if job.target_key in busy_targets:
                continue
            if busy_queues[job.queue] >= limits.get(job.queue, 1):
                continue
            # A resumed or fresh start is an attempt; coming back from a poll is not.
            attempts = job.attempts if job.state == JobState.WAITING else job.attempts + 1
            claimed = dataclasses.replace(
                job.moved(JobState.RUNNING, now) if job.state != JobState.RUNNING else job,
                lease_owner=owner,
                lease_expires_at=lease_until,
                attempts=attempts,
                run_after=None,
                started_at=job.started_at or now,
                updated_at=now,
                version=job.version + 1,
            )
            result = await self.conn.execute(
                update(_jobs)
                .where(_jobs.c.guid == job.guid, _jobs.c.version == job.version)
                .values(self.to_row(claimed))
            )
            if result.rowcount == 1:
                return claimed
        return None

    async def write_as_owner(self, job: Job, owner: str, now: datetime) -> Job | None:
        stored = dataclasses.replace(job, version=job.version + 1, updated_at=now)
        result = await self.conn.execute(
            update(_jobs)
            .where(
                _jobs.c.guid == job.guid,
                _jobs.c.lease_owner == owner,
                _jobs.c.lease_expires_at > now,
            )
            .values(self.to_row(stored))
        )
        return stored if result.rowcount == 1 else None

    async def expire_leases_of(self, owner_prefix: str, now: datetime) -> int:
        result = await self.conn.execute(
            update(_jobs)
            .where(
                _jobs.c.state == JobState.RUNNING.value,
                _jobs.c.lease_owner.startswith(owner_prefix, autoescape=True),
            )
            .values(lease_expires_at=now, version=_jobs.c.version + 1)
        )
        return int(result.rowcount)

    async def queue_stats(self, now: datetime) -> list[QueueStats]:
        queues = {row[0]: row[1] for row in await self.conn.execute(select(_queues))}
        counts = await self.conn.execute(
            select(_jobs.c.queue, _jobs.c.state, func.count(), func.min(_jobs.c.created_at))
            .where(
                _jobs.c.state.in_(
                    [JobState.QUEUED.value, JobState.RUNNING.value, JobState.WAITING.value]
                )
            )
            .group_by(_jobs.c.queue, _jobs.c.state)
        )
        per_queue: dict[str, dict[str, Any]] = {}
        for queue, state, count, oldest in counts.all():
            entry = per_queue.setdefault(queue, {"oldest": None})
            entry[state] = count
            if state == JobState.QUEUED.value:
                entry["oldest"] = oldest  # min() keeps the column's type: aware UTC
        finished = await self.conn.execute(
            select(_jobs.c.queue, func.count())
            .where(
                _jobs.c.state == JobState.COMPLETE.value,
                _jobs.c.finished_at > now - timedelta(hours=1),
            )
            .group_by(_jobs.c.queue)
        )
        completed = {row[0]: row[1] for row in finished.all()}
        return [
            QueueStats(
                name=name,
                concurrency=queues.get(name, 1),
                queued=per_queue.get(name, {}).get(JobState.QUEUED.value, 0),
                running=per_queue.get(name, {}).get(JobState.RUNNING.value, 0),
                waiting=per_queue.get(name, {}).get(JobState.WAITING.value, 0),
                oldest_queued_at=per_queue.get(name, {}).get("oldest"),
                completed_last_hour=completed.get(name, 0),
            )
            for name in sorted(set(queues) | set(per_queue))
        ]


class SqlQueueRepo:
    def __init__(self, conn: AsyncConnection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock

    @staticmethod
    def _queue(row: Mapping[Any, Any]) -> Queue:
        return Queue(name=row["name"], concurrency=row["concurrency"], updated_at=row["updated_at"])

    async def get(self, name: str) -> Queue | None:
        found = (
            (await self.conn.execute(select(_queues).where(_queues.c.name == name)))
            .mappings()
            .first()
        )
        return self._queue(found) if found else None

    async def ensure(self, name: str, concurrency: int) -> Queue:
        existing = await self.get(name)
        if existing is not None:
            return existing
        queue = Queue(name=name, concurrency=concurrency, updated_at=self.clock.now())
        await self.conn.execute(
            insert(_queues).values(
                name=queue.name, concurrency=queue.concurrency, updated_at=queue.updated_at
            )
        )
        return queue

    async def set_concurrency(self, name: str, concurrency: int) -> tuple[Queue, Queue]:
        before = await self.get(name)
        if before is None:
            raise NotFound.of("Queue")
        after = Queue(name=name, concurrency=concurrency, updated_at=self.clock.now())
        await self.conn.execute(
            update(_queues)
            .where(_queues.c.name == name)
            .values(concurrency=concurrency, updated_at=after.updated_at)
        )
        return before, after

    async def all(self) -> list[Queue]:
        rows = (await self.conn.execute(select(_queues).order_by(_queues.c.name))).mappings()
        return [self._queue(row) for row in rows.all()]


_clients = tables.oauth_clients


class SqlClientRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @staticmethod
    def _client(row: Mapping[Any, Any]) -> OAuthClient:
        return OAuthClient(
            client_id=row["client_id"],
            secret_hash=row["secret_hash"],
            authorized_grant_types=tuple(row["authorized_grant_types"]),
            authorities=tuple(row["authorities"]),
            created_at=row["created_at"],
        )

    async def add(self, client: OAuthClient) -> OAuthClient:
        try:
            await self.conn.execute(
                insert(_clients).values(
                    client_id=client.client_id,
                    secret_hash=client.secret_hash,
                    authorized_grant_types=list(client.authorized_grant_types),
                    authorities=list(client.authorities),
                    created_at=client.created_at,
                )
            )
        except IntegrityError:
            raise Uniqueness(f"Client '{client.client_id}' already exists.") from None
        return client

    async def get(self, client_id: str) -> OAuthClient | None:
        found = (
            (await self.conn.execute(select(_clients).where(_clients.c.client_id == client_id)))
            .mappings()
            .first()
        )
        return self._client(found) if found else None

    async def delete(self, client_id: str) -> OAuthClient | None:
        before = await self.get(client_id)
        if before is not None:
            await self.conn.execute(delete(_clients).where(_clients.c.client_id == client_id))
        return before

    async def all(self) -> list[OAuthClient]:
        rows = await self.conn.execute(select(_clients).order_by(_clients.c.client_id))
        return [self._client(row) for row in rows.mappings().all()]


_keys = tables.signing_keys


class SqlKeyRepo:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @staticmethod
    def _key(row: Mapping[Any, Any]) -> SigningKey:
        return SigningKey(kid=row["kid"], secret=row["secret"], created_at=row["created_at"])

    async def all(self) -> list[SigningKey]:
        rows = await self.conn.execute(select(_keys).order_by(_keys.c.created_at.desc()))
        return [self._key(row) for row in rows.mappings().all()]

    async def current(self) -> SigningKey | None:
        keys = await self.all()
        return keys[0] if keys else None

    async def add(self, key: SigningKey) -> SigningKey:
        await self.conn.execute(
            insert(_keys).values(kid=key.kid, secret=key.secret, created_at=key.created_at)
        )
        return key


class SqlTx:
    """Every repository over one connection in one transaction."""

    def __init__(self, conn: AsyncConnection, clock: Clock, dialect: str) -> None:
        self.orgs = SqlOrgRepo(conn, clock, dialect)
        self.spaces = SqlSpaceRepo(conn, clock, dialect)
        self.apps = SqlAppRepo(conn, clock, dialect)
        self.processes = SqlProcessRepo(conn, clock, dialect)
        self.droplets = SqlDropletRepo(conn, clock, dialect)
        self.packages = SqlPackageRepo(conn, clock, dialect)
        self.builds = SqlBuildRepo(conn, clock, dialect)
        self.users = SqlUserRepo(conn, clock, dialect)
        self.roles = SqlRoleRepo(conn, clock, dialect)
        self.domains = SqlDomainRepo(conn, clock, dialect)
        self.routes = SqlRouteRepo(conn, clock, dialect)
        self.destinations = SqlDestinationRepo(conn, clock, dialect)
        self.events = SqlEventRepo(conn, clock, dialect)
        self.jobs = SqlJobRepo(conn, clock, dialect)
        self.queues = SqlQueueRepo(conn, clock)
        self.clients = SqlClientRepo(conn)
        self.keys = SqlKeyRepo(conn)
