"""Routes and their destinations (CF v3): `host.domain/path` in a space, sending traffic to
process types of apps in that space.

Rules, as CF has them unless noted:
- host + domain + path is unique across the platform (host and path compared ignoring case,
  as the router compares them);
- the host is a DNS label, `*` (a wildcard) or empty (the domain itself); on a shared domain
  only admins may use `*` or an empty host;
- the path is empty or starts with `/`, is not `/` alone, has no `?`, `#` or `..`, and is at
  most 128 characters;
- a private domain is usable only in its own org's spaces;
- Overcast's own rule: a route may not be the API's own host, and on shared domains the
  platform's host names (RESERVED_HOSTS) cannot be taken; nor may a route answer to a name
  that is itself a domain (CF's domain conflict).

The routing tier learns what changed through `routes_changed` (process guids whose uris may
have changed), called after each change commits, and reads `uris_of_processes` and
`route_options`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from overcast.controller.access import (
    Caller,
    forbid,
    page_of_app,
    page_visible,
    visible_space,
)
from overcast.controller.base import MetadataPatch, UseCase
from overcast.controller.domains import DOMAIN_DELETE, MAX_DOMAIN_LENGTH, api_host
from overcast.controller.events import record, record_app_event
from overcast.core.ids import new_guid
from overcast.core.logging import get_logger
from overcast.jobs.engine import JobContext, Operation, StageSpec
from overcast.models.errors import (
    NotAuthorized,
    NotFound,
    RouteHostTaken,
    Uniqueness,
    Unprocessable,
)
from overcast.models.jobs import Job
from overcast.models.metadata import patch_metadata
from overcast.models.query import ListQuery, Page
from overcast.models.resources import (
    App,
    Domain,
    LoadBalancing,
    Metadata,
    Route,
    RouteDestination,
    Space,
)
from overcast.store.base import Tx

log = get_logger(__name__)

ROUTE_DELETE = "route.delete"
DELETES_QUEUE = "deletes"
# Host names of the platform itself: nobody may take them on a shared domain (the API host is
# refused on every domain, whatever its name).
RESERVED_HOSTS = frozenset({"api", "uaa", "login"})
WILDCARD = "*"
MAX_HOST_LENGTH = 63
MAX_PATH_LENGTH = 128
DEFAULT_PROCESS_TYPE = "web"
DEFAULT_DESTINATION_PORT = 8080
DESTINATION_PROTOCOLS = frozenset({"http1", "http2"})
DEFAULT_DESTINATION_PROTOCOL = "http1"
# Look-ups by guid are made in slices of this many (bound parameters are limited).
_CHUNK = 500

_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PATH = re.compile(r"^/[A-Za-z0-9\-._~%!$&'()*+,;=:@/]*$")

RoutesChanged = Callable[[list[str]], Awaitable[None]]


def check_host(host: str) -> str:
    """The host in lower case: empty, `*`, or a DNS label."""
    lowered = host.lower()
    if lowered in ("", WILDCARD):
        return lowered
    if len(lowered) > MAX_HOST_LENGTH:
        raise Unprocessable(f"Host is too long (maximum is {MAX_HOST_LENGTH} characters)")
    if not _HOST.fullmatch(lowered):
        raise Unprocessable(
            'Host must be either "*" or a DNS label: letters, digits and "-", not starting or '
            'ending with "-"'
        )
    return lowered


def check_path(path: str) -> str:
    if path == "":
        return path
    if len(path) > MAX_PATH_LENGTH:
        raise Unprocessable(f"Path is too long (maximum is {MAX_PATH_LENGTH} characters)")
    if not path.startswith("/"):
        raise Unprocessable("Path must begin with /")
    if path == "/":
        raise Unprocessable("Path cannot be exactly /")
    if "?" in path or "#" in path:
        raise Unprocessable("Path cannot contain ? or #")
    if ".." in path:
        raise Unprocessable("Path cannot contain ..")
    if not _PATH.fullmatch(path):
        raise Unprocessable("Path must contain only characters allowed in a URL path")
    return path


def check_load_balancing(value: str) -> LoadBalancing:
    try:
        return LoadBalancing(value)
    except ValueError:
        choices = " or ".join(f"'{choice.value}'" for choice in LoadBalancing)
        raise Unprocessable(f"Loadbalancing must be {choices}") from None


def route_url(host: str, domain_name: str, path: str) -> str:
    """CF's `url`: host.domain/path, or domain/path for an empty host."""
    return f"{host}.{domain_name}{path}" if host else f"{domain_name}{path}"


def _taken(host: str, path: str, domain_name: str) -> RouteHostTaken:
    with_host = f" with host '{host}'" if host else ""
    with_path = f" and path '{path}'" if path and host else f" with path '{path}'" if path else ""
    return RouteHostTaken(f"Route already exists{with_host}{with_path} for domain '{domain_name}'.")


def _chunks(values: Iterable[str]) -> list[list[str]]:
    ordered = sorted(set(values))
    return [ordered[start : start + _CHUNK] for start in range(0, len(ordered), _CHUNK)]


@dataclass(frozen=True)
class RouteView:
    """A route with what CF shows alongside it: its domain and its destinations."""

    route: Route
    domain: Domain
    destinations: tuple[RouteDestination, ...] = ()

    @property
    def url(self) -> str:
        return route_url(self.route.host, self.domain.name, self.route.path)


@dataclass(frozen=True)
class DestinationRequest:
    app_guid: str
    process_type: str = DEFAULT_PROCESS_TYPE
    port: int | None = None
    protocol: str | None = None
    weight: int | None = None


@dataclass(frozen=True)
class RouteChanges:
    # Only the keys given: {"loadbalancing": None} resets it to the default.
    options: dict[str, str | None] | None = None
    labels: MetadataPatch = None
    annotations: MetadataPatch = None


_Key = tuple[str, str, int]


def _key(destination: RouteDestination) -> _Key:
    return (destination.app_guid, destination.process_type, destination.port)


class Routes(UseCase):
    # Called (after the change commits) with the guids of the processes whose uris may have
    # changed; wired by the composition root to the routing tier.
    routes_changed: RoutesChanged | None = None
    # The API's external URL (set by the controller): its host cannot be a route.
    api_url: str = ""

    def operations(self) -> list[Operation]:
        return [
            Operation(ROUTE_DELETE, DELETES_QUEUE, (StageSpec("delete route", self._delete),)),
            Operation(
                DOMAIN_DELETE,
                DELETES_QUEUE,
                (StageSpec("delete domain and its routes", self._delete_domain),),
            ),
        ]

    # --- what the routing tier reads --------------------------------------------------------

    async def uris_of_processes(self, process_guids: Sequence[str]) -> dict[str, list[str]]:
        """For each process guid, the uris (lower-case `host.domain[/path]`, or
        `domain[/path]` for an empty host) of every route mapped to its app and type, sorted.
        Routes on internal domains are left out: they are not for the public router. An
        unknown guid maps to []."""
        result: dict[str, list[str]] = {guid: [] for guid in process_guids}
        async with self.store.read() as tx:
            processes = [
                process
                for chunk in _chunks(process_guids)
                for process in await tx.processes.list_all({"guids": chunk})
            ]
            destinations = [
                destination
                for chunk in _chunks(process.app_guid for process in processes)
                for destination in await tx.destinations.list_all({"app_guids": chunk})
            ]
            routes = {
                route.guid: route
                for chunk in _chunks(d.route_guid for d in destinations)
                for route in await tx.routes.list_all({"guids": chunk})
            }
            domains = {
                domain.guid: domain
                for chunk in _chunks(route.domain_guid for route in routes.values())
                for domain in await tx.domains.list_all({"guids": chunk})
            }
        uris: dict[tuple[str, str], set[str]] = {}
        for destination in destinations:
            route = routes.get(destination.route_guid)
            domain = domains.get(route.domain_guid) if route else None
            if route is None or domain is None or domain.internal:
                continue
            uri = route_url(route.host, domain.name, route.path).lower()
            uris.setdefault((destination.app_guid, destination.process_type), set()).add(uri)
        for process in processes:
            result[process.guid] = sorted(uris.get((process.app_guid, process.type), ()))
        return result

    async def route_options(self, uris: Sequence[str]) -> dict[str, str]:
        """uri (as uris_of_processes gives them) -> the route's load balancing
        ("round-robin" or "least-connection"); round-robin when unset or unknown."""
        wanted: dict[str, list[tuple[str, str, str]]] = {}
        for uri in uris:
            address, slash, rest = uri.lower().partition("/")
            path = f"/{rest}" if slash else ""
            host, _, below = address.partition(".")
            wanted[uri] = [("", address, path), (host, below, path)]
        names = sorted({domain for choices in wanted.values() for _, domain, _ in choices})
        hosts = {host for choices in wanted.values() for host, _, _ in choices}
        async with self.store.read() as tx:
            domains = [
                d for chunk in _chunks(names) for d in await tx.domains.list_all({"names": chunk})
            ]
            by_name = {domain.name.lower(): domain.guid for domain in domains}
            routes = []
            for domain_chunk in _chunks(by_name.values()):
                for host_chunk in _chunks(hosts):
                    routes += await tx.routes.list_all(
                        {"domain_guids": domain_chunk, "hosts": host_chunk}
                    )
        balancing = {
            (route.domain_guid, route.host, route.path.lower()): route.load_balancing
            for route in routes
        }
        result: dict[str, str] = {}
        for uri, choices in wanted.items():
            found: LoadBalancing | None = None
            for host, domain_name, path in choices:
                domain_guid = by_name.get(domain_name)
                if domain_guid is not None and (domain_guid, host, path) in balancing:
                    found = balancing[(domain_guid, host, path)] or LoadBalancing.ROUND_ROBIN
                    break
            result[uri] = (found or LoadBalancing.ROUND_ROBIN).value
        return result

    async def _notify(self, process_guids: Iterable[str]) -> None:
        guids = sorted(set(process_guids))
        if not guids or self.routes_changed is None:
            return
        try:
            await self.routes_changed(guids)
        except Exception:
            # The change is committed; the routing tier catches up on its next full sync.
            log.exception("routes.notify_failed", processes=len(guids))

    @staticmethod
    async def _processes_of(tx: Tx, destinations: Iterable[RouteDestination]) -> list[str]:
        """The guids of the processes (existing ones) these destinations point at."""
        pairs = {(d.app_guid, d.process_type) for d in destinations}
        if not pairs:
            return []
        processes = await tx.processes.list_all({"app_guids": sorted({app for app, _ in pairs})})
        return sorted(p.guid for p in processes if (p.app_guid, p.type) in pairs)

    # --- reads ------------------------------------------------------------------------------

    @staticmethod
    async def _views(tx: Tx, routes: Sequence[Route]) -> list[RouteView]:
        domains = {
            domain.guid: domain
            for domain in await tx.domains.list_all(
                {"guids": sorted({route.domain_guid for route in routes})}
            )
        }
        by_route: dict[str, list[RouteDestination]] = {}
        for destination in await tx.destinations.of_routes([route.guid for route in routes]):
            by_route.setdefault(destination.route_guid, []).append(destination)
        return [
            RouteView(route, domains[route.domain_guid], tuple(by_route.get(route.guid, ())))
            for route in routes
        ]

    async def _view(self, tx: Tx, route: Route) -> RouteView:
        (view,) = await self._views(tx, [route])
        return view

    @staticmethod
    async def _visible(tx: Tx, caller: Caller, guid: str) -> tuple[Route, Space]:
        route = await tx.routes.get(guid)
        if route is None:
            raise NotFound.of("Route")
        space = await tx.spaces.require(route.space_guid)
        if not caller.permissions.can_see_space(space.guid, space.org_guid):
            raise NotFound.of("Route")
        return route, space

    async def _writable(self, tx: Tx, caller: Caller, guid: str) -> tuple[Route, Space]:
        route, space = await self._visible(tx, caller, guid)
        if not caller.permissions.can_develop_in_space(space.guid):
            raise forbid()
        return route, space

    async def get(self, caller: Caller, guid: str) -> RouteView:
        async with self.store.read() as tx:
            route, _ = await self._visible(tx, caller, guid)
            return await self._view(tx, route)

    async def page(self, caller: Caller, query: ListQuery) -> Page[RouteView]:
        async with self.store.read() as tx:
            page = await page_visible(tx, caller, tx.routes, query)
            return Page(items=await self._views(tx, page.items), total=page.total)

    async def of_app(self, caller: Caller, app_guid: str, query: ListQuery) -> Page[RouteView]:
        async with self.store.read() as tx:
            page = await page_of_app(tx, caller, app_guid, tx.routes, query)
            return Page(items=await self._views(tx, page.items), total=page.total)

    # --- routes -----------------------------------------------------------------------------

    async def create(
        self,
        caller: Caller,
        *,
        space_guid: str,
        domain_guid: str,
        host: str = "",
        path: str = "",
        port: int | None = None,
        load_balancing: str | None = None,
        labels: MetadataPatch = None,
        annotations: MetadataPatch = None,
    ) -> RouteView:
        host = check_host(host)
        path = check_path(path)
        if port is not None:
            raise Unprocessable("Routes on HTTP domains cannot have a port")
        balancing = check_load_balancing(load_balancing) if load_balancing is not None else None
        metadata = patch_metadata(Metadata(), labels, annotations)
        now = self.clock.now()
        async with self.store.write() as tx:
            try:
                space = await visible_space(tx, caller, space_guid)
            except NotFound:
                raise Unprocessable(
                    "Invalid space. Ensure that the space exists and you have access to it."
                ) from None
            if not caller.permissions.can_develop_in_space(space.guid):
                raise forbid()
            domain = await self._usable_domain(tx, caller, domain_guid, space)
            await self._check_address(tx, caller, host, path, domain)
            route = Route(
                guid=new_guid(),
                host=host,
                path=path,
                domain_guid=domain.guid,
                space_guid=space.guid,
                created_at=now,
                updated_at=now,
                load_balancing=balancing,
                metadata=metadata,
            )
            try:
                await tx.routes.add(route)
            except Uniqueness:
                raise _taken(host, path, domain.name) from None
            view = RouteView(route, domain)
            await record(
                tx,
                self.clock,
                caller,
                "audit.route.create",
                target=(route.guid, "route", view.url),
                space_guid=space.guid,
                org_guid=space.org_guid,
                request={
                    "host": host,
                    "path": path,
                    "domain_guid": domain.guid,
                    "space_guid": space.guid,
                    "options": {"loadbalancing": balancing.value} if balancing else {},
                },
            )
        return view

    @staticmethod
    async def _usable_domain(tx: Tx, caller: Caller, guid: str, space: Space) -> Domain:
        domain = await tx.domains.get(guid)
        if domain is None or (
            domain.org_guid is not None and not caller.permissions.can_see_org(domain.org_guid)
        ):
            raise Unprocessable(
                "Invalid domain. Ensure that the domain exists and you have access to it."
            )
        if domain.org_guid is not None and domain.org_guid != space.org_guid:
            org = await tx.orgs.require(space.org_guid)
            raise Unprocessable(
                f"Invalid domain. Domain '{domain.name}' is not available in organization "
                f"'{org.name}'."
            )
        return domain

    async def _check_address(
        self, tx: Tx, caller: Caller, host: str, path: str, domain: Domain
    ) -> None:
        shared = domain.org_guid is None
        if shared and host == "" and not caller.admin:
            raise Unprocessable("Missing host. Routes in shared domains must have a host defined.")
        if shared and host == WILDCARD and not caller.admin:
            raise NotAuthorized(
                "You do not have sufficient permissions to create a route with a wildcard host "
                "on a shared domain."
            )
        if domain.internal and path:
            raise Unprocessable("Paths are not supported for internal domains.")
        fqdn = f"{host}.{domain.name}" if host else domain.name
        if len(fqdn) > MAX_DOMAIN_LENGTH:
            raise Unprocessable(
                f"Host combined with domain name must be no more than {MAX_DOMAIN_LENGTH} "
                "characters."
            )
        if (shared and host in RESERVED_HOSTS) or fqdn == api_host(self.api_url):
            raise Unprocessable(f"The host '{fqdn}' is reserved for the platform.")
        if host and host != WILDCARD and await tx.domains.by_name(fqdn) is not None:
            raise Unprocessable(f"Route conflicts with domain '{fqdn}'.")
        if await tx.routes.by_address(domain.guid, host, path) is not None:
            raise _taken(host, path, domain.name)

    async def update(self, caller: Caller, guid: str, changes: RouteChanges) -> RouteView:
        options = changes.options or {}
        unknown = sorted(set(options) - {"loadbalancing"})
        if unknown:
            raise Unprocessable(f"Unknown route option(s): {', '.join(unknown)}")
        balancing_given = "loadbalancing" in options
        requested = options.get("loadbalancing")
        balancing = check_load_balancing(requested) if requested is not None else None
        async with self.store.write() as tx:
            route, space = await self._writable(tx, caller, guid)

            def apply(current: Route) -> Route:
                return dataclasses.replace(
                    current,
                    load_balancing=balancing if balancing_given else current.load_balancing,
                    metadata=patch_metadata(current.metadata, changes.labels, changes.annotations),
                )

            before, after = await tx.routes.update(guid, apply)
            view = await self._view(tx, after)
            request: dict[str, object] = {}
            if balancing_given:
                request["options"] = {"loadbalancing": requested}
            metadata = {
                key: value
                for key, value in (("labels", changes.labels), ("annotations", changes.annotations))
                if value is not None
            }
            if metadata:
                request["metadata"] = metadata
            await record(
                tx,
                self.clock,
                caller,
                "audit.route.update",
                target=(route.guid, "route", view.url),
                space_guid=space.guid,
                org_guid=space.org_guid,
                request=request,
            )
            changed = (
                await self._processes_of(tx, view.destinations)
                if before.load_balancing != after.load_balancing
                else []
            )
        await self._notify(changed)
        return view

    async def delete(self, caller: Caller, guid: str) -> Job:
        """Queue the `route.delete` job: the route goes with its destinations."""
        async with self.store.write() as tx:
            route, space = await self._writable(tx, caller, guid)
            view = await self._view(tx, route)
            job = await self.engine.submit_in(
                tx,
                ROUTE_DELETE,
                target_type="route",
                target_guid=route.guid,
                creator=self.creator(caller),
            )
            await record(
                tx,
                self.clock,
                caller,
                "audit.route.delete-request",
                target=(route.guid, "route", view.url),
                space_guid=space.guid,
                org_guid=space.org_guid,
            )
        self.engine.wake()
        return job

    async def _delete(self, context: JobContext) -> None:
        """Idempotent: the processes to tell about are kept in the job's result before the
        route goes, so a run repeated after a crash still tells them."""
        guid = context.job.target_guid
        async with self.store.read() as tx:
            route = await tx.routes.get(guid)
            affected = (
                await self._processes_of(tx, await tx.destinations.of_routes([guid]))
                if route is not None
                else list(context.job.result.get("process_guids", []))
            )
        if route is not None:
            await context.set_result(process_guids=affected)
            async with self.store.write() as tx:
                await tx.routes.delete(guid)  # destinations go with it (ON DELETE CASCADE)
        await self._notify(affected)

    async def _delete_domain(self, context: JobContext) -> None:
        guid = context.job.target_guid
        async with self.store.read() as tx:
            domain = await tx.domains.get(guid)
            if domain is not None:
                route_guids = await tx.routes.guids({"domain_guids": [guid]})
                affected = await self._processes_of(
                    tx,
                    [
                        d
                        for chunk in _chunks(route_guids)
                        for d in await tx.destinations.of_routes(chunk)
                    ],
                )
            else:
                affected = list(context.job.result.get("process_guids", []))
        if domain is not None:
            await context.set_result(process_guids=affected)
            async with self.store.write() as tx:
                await tx.domains.delete(guid)  # routes and destinations go with it (CASCADE)
        await self._notify(affected)

    # --- destinations -----------------------------------------------------------------------

    async def destinations(self, caller: Caller, guid: str) -> RouteView:
        return await self.get(caller, guid)

    async def add_destinations(
        self, caller: Caller, guid: str, requests: Sequence[DestinationRequest]
    ) -> RouteView:
        """Add destinations; one the route already has (same app, process type and port) is
        left as it is."""
        return await self._set_destinations(caller, guid, requests, replace=False)

    async def replace_destinations(
        self, caller: Caller, guid: str, requests: Sequence[DestinationRequest]
    ) -> RouteView:
        """Make the route's destinations exactly these (an empty list unmaps every app)."""
        return await self._set_destinations(caller, guid, requests, replace=True)

    async def remove_destination(self, caller: Caller, guid: str, destination_guid: str) -> None:
        async with self.store.write() as tx:
            route, space = await self._writable(tx, caller, guid)
            destination = await tx.destinations.get(destination_guid)
            if destination is None or destination.route_guid != route.guid:
                raise NotFound.of("Destination")
            view = await self._view(tx, route)
            affected = await self._processes_of(tx, [destination])
            await tx.destinations.delete(destination.guid)
            app = await tx.apps.require(destination.app_guid)
            await self._app_event(
                tx, caller, "audit.app.unmap-route", app, space, view, destination
            )
        await self._notify(affected)

    async def _set_destinations(
        self,
        caller: Caller,
        guid: str,
        requests: Sequence[DestinationRequest],
        *,
        replace: bool,
    ) -> RouteView:
        now = self.clock.now()
        async with self.store.write() as tx:
            route, space = await self._writable(tx, caller, guid)
            apps = await self._destination_apps(tx, caller, route, requests)
            wanted: dict[_Key, RouteDestination] = {}
            for request in requests:
                destination = _destination(route.guid, request, now)
                wanted.setdefault(_key(destination), destination)
            current = {_key(d): d for d in await tx.destinations.of_routes([route.guid])}
            added = [d for key, d in wanted.items() if key not in current]
            removed = [d for key, d in current.items() if replace and key not in wanted]
            for destination in removed:
                await tx.destinations.delete(destination.guid)
            for destination in added:
                await tx.destinations.add(destination)
            if replace:
                for key, destination in wanted.items():
                    existing = current.get(key)
                    if existing is not None and existing.protocol != destination.protocol:
                        await tx.destinations.update(
                            existing.guid, _setting_protocol(destination.protocol)
                        )
            view = await self._view(tx, route)
            for destination in removed:
                app = apps.get(destination.app_guid) or await tx.apps.require(destination.app_guid)
                await self._app_event(
                    tx, caller, "audit.app.unmap-route", app, space, view, destination
                )
            for destination in added:
                await self._app_event(
                    tx,
                    caller,
                    "audit.app.map-route",
                    apps[destination.app_guid],
                    space,
                    view,
                    destination,
                )
            affected = await self._processes_of(tx, [*added, *removed])
        await self._notify(affected)
        return view

    @staticmethod
    async def _destination_apps(
        tx: Tx, caller: Caller, route: Route, requests: Sequence[DestinationRequest]
    ) -> dict[str, App]:
        """The apps the requests name, each visible to the caller and in the route's space."""
        for request in requests:
            _check_destination(request)
        guids = sorted({request.app_guid for request in requests})
        found = {app.guid: app for app in await tx.apps.list_all({"guids": guids})} if guids else {}
        spaces = (
            {
                space.guid: space
                for space in await tx.spaces.list_all(
                    {"guids": sorted({app.space_guid for app in found.values()})}
                )
            }
            if found
            else {}
        )
        missing = [
            guid
            for guid in guids
            if guid not in found
            or not caller.permissions.can_see_space(
                found[guid].space_guid, spaces[found[guid].space_guid].org_guid
            )
        ]
        if missing:
            named = ", ".join(f'"{guid}"' for guid in missing)
            raise Unprocessable(
                f"App(s) with guid(s) {named} do not exist or you do not have access."
            )
        if any(app.space_guid != route.space_guid for app in found.values()):
            raise Unprocessable("Routes destinations must be in the same space as the route.")
        return found

    async def _app_event(
        self,
        tx: Tx,
        caller: Caller,
        event_type: str,
        app: App,
        space: Space,
        view: RouteView,
        destination: RouteDestination,
    ) -> None:
        await record_app_event(
            tx,
            self.clock,
            caller,
            event_type,
            app,
            space,
            route_guid=view.route.guid,
            route_url=view.url,
            destination_guid=destination.guid,
            process_type=destination.process_type,
            app_port=destination.port,
            weight=destination.weight,
            protocol=destination.protocol,
        )


def _setting_protocol(protocol: str) -> Callable[[RouteDestination], RouteDestination]:
    return lambda destination: dataclasses.replace(destination, protocol=protocol)


def _check_destination(request: DestinationRequest) -> None:
    if not request.process_type or len(request.process_type) > 255:
        raise Unprocessable("Process type must be 1 to 255 characters")
    if request.port is not None and not 1 <= request.port <= 65535:
        raise Unprocessable("Destination port must be between 1 and 65535")
    if request.protocol is not None and request.protocol not in DESTINATION_PROTOCOLS:
        choices = " or ".join(f"'{p}'" for p in sorted(DESTINATION_PROTOCOLS))
        raise Unprocessable(f"Destination protocol must be {choices} for HTTP routes")
    if request.weight is not None:
        raise Unprocessable("Weighted destinations are not supported")


def _destination(route_guid: str, request: DestinationRequest, now: datetime) -> RouteDestination:
    return RouteDestination(
        guid=new_guid(),
        route_guid=route_guid,
        app_guid=request.app_guid,
        process_type=request.process_type,
        port=request.port if request.port is not None else DEFAULT_DESTINATION_PORT,
        protocol=request.protocol or DEFAULT_DESTINATION_PROTOCOL,
        created_at=now,
        updated_at=now,
    )
