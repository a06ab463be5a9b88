"""Manifests on the server: `POST /v3/spaces/:g/actions/apply_manifest` and
`GET /v3/apps/:g/manifest`, with the same semantics as the CLI's push (overcast.models.manifest).

Applying is CF's: additive. An app that does not exist is created; what a manifest leaves out
(other environment variables, routes, processes) is left alone. Everything that can be checked
without changing anything is checked when the request comes (the manifest itself, the space,
the routes' domains, the buildpacks and stacks), so a bad manifest is a 422 and nothing is
created; the changes are then made by a job, app by app, as the user who asked."""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from overcast.auth.identity import Identity
from overcast.controller.access import Caller, forbid, load_caller, visible_app, visible_space
from overcast.controller.apps import STACKS, AppChanges, Apps, Lifecycle, new_process
from overcast.controller.base import UseCase
from overcast.controller.buildpacks import Buildpacks
from overcast.controller.orgs import Organizations
from overcast.controller.processes import (
    HealthCheckChange,
    ProcessChanges,
    Processes,
    Scale,
    check_scale,
    health_check_after,
)
from overcast.controller.routes import DestinationRequest, Routes, route_url
from overcast.jobs.engine import JobContext, Operation, StageSpec
from overcast.models.errors import Unprocessable
from overcast.models.jobs import Job
from overcast.models.manifest import (
    AppManifest,
    Manifest,
    ManifestError,
    ManifestMetadata,
    ManifestProblem,
    ProcessManifest,
    RouteEntry,
    parse_manifest,
    render_manifest,
)
from overcast.models.resources import App, Domain, HealthCheck, Process, Route
from overcast.store.base import Tx

APPLY_MANIFEST = "space.apply_manifest"
APPLY_QUEUE = "manifests"
MAX_COMMAND_LENGTH = 4096
SOURCE = "manifest.yml"
# A host CF would accept: lower-case letters, digits and dashes, at most 63 characters.
_NOT_HOST = re.compile(r"[^a-z0-9-]+")
_RANDOM_WORDS = (
    "amber", "brisk", "calm", "dusty", "eager", "fuzzy", "gentle", "hazy", "icy", "jolly",
    "keen", "lucky", "misty", "noble", "odd", "proud", "quiet", "rapid", "sunny", "tidy",
)  # fmt: skip
_RANDOM_NOUNS = (
    "badger", "crane", "dingo", "egret", "ferret", "gecko", "heron", "ibis", "jackal", "koala",
    "lemur", "marmot", "newt", "otter", "panda", "quail", "raven", "stoat", "tapir", "walrus",
)  # fmt: skip


@dataclass(frozen=True)
class RouteAddress:
    """A manifest route resolved against the platform's domains."""

    text: str
    domain: Domain
    host: str
    path: str


def default_host(app_name: str) -> str:
    """CF's hostname for an app's default route: its name, lower-cased, with every run of
    characters a host cannot hold made one dash."""
    host = _NOT_HOST.sub("-", app_name.lower()).strip("-")[:63].strip("-")
    return host or "app"


def random_host(app_name: str) -> str:
    words = f"{secrets.choice(_RANDOM_WORDS)}-{secrets.choice(_RANDOM_NOUNS)}"
    return f"{default_host(app_name)[:40]}-{words}-{secrets.token_hex(2)}"


def split_route(text: str) -> tuple[str, str]:
    """`host.domain/path` -> (`host.domain`, `/path`); no scheme, no port."""
    address = text.strip().lower()
    if "://" in address:
        raise ValueError("a route has no scheme: write host.domain/path")
    name, slash, path = address.partition("/")
    if ":" in name:
        raise ValueError("routes with a port (TCP routes) are not supported")
    return name, (slash + path).rstrip("/") if path else ""


class Manifests(UseCase):
    def __init__(
        self,
        *parts: Any,
        orgs: Organizations,
        apps: Apps,
        processes: Processes,
        routes: Routes,
        buildpacks: Buildpacks,
    ) -> None:
        super().__init__(*parts)
        self.orgs = orgs
        self.apps = apps
        self.processes = processes
        self.routes = routes
        self.buildpacks = buildpacks

    def operations(self) -> list[Operation]:
        return [Operation(APPLY_MANIFEST, APPLY_QUEUE, (StageSpec("apply manifest", self._apply),))]

    # --- POST /v3/spaces/:g/actions/apply_manifest ------------------------------------------

    async def apply(self, caller: Caller, space_guid: str, text: str) -> Job:
        manifest = parse_manifest(text, source=SOURCE)
        async with self.store.write() as tx:
            space = await visible_space(tx, caller, space_guid)
            if not caller.permissions.can_develop_in_space(space.guid):
                raise forbid()
            await self._check(tx, manifest)
            job = await self.engine.submit_in(
                tx,
                APPLY_MANIFEST,
                target_type="space",
                target_guid=space.guid,
                params={"manifest": text, "identity": _identity_params(caller.identity)},
                creator=self.creator(caller),
            )
        self.engine.wake()
        return job

    async def _check(self, tx: Tx, manifest: Manifest) -> None:
        """What would fail half-way through the job, refused before anything changes."""
        problems: list[ManifestProblem] = []
        for index, app in enumerate(manifest.applications):
            path = f"applications[{index}]"
            if app.buildpacks:
                try:
                    self.buildpacks.check_requested(app.buildpacks)
                except Unprocessable as error:
                    problems.append(ManifestProblem(app.line, f"{path}.buildpacks", str(error)))
            if app.stack is not None and app.stack not in STACKS:
                message = f"Stack {app.stack!r} does not exist (available: {', '.join(STACKS)})"
                problems.append(ManifestProblem(app.line, f"{path}.stack", message))
            for process in _processes(app):
                try:
                    _check_process(process)
                except Unprocessable as error:
                    where = f"{path}.processes[type={process.type}]"
                    problems.append(ManifestProblem(process.line or app.line, where, str(error)))
            for number, entry in enumerate(app.routes or ()):
                try:
                    await resolve_route(tx, entry.route)
                except Unprocessable as error:
                    problems.append(
                        ManifestProblem(entry.line, f"{path}.routes[{number}]", str(error))
                    )
            for number, service in enumerate(app.services or ()):
                problems.append(
                    ManifestProblem(
                        service.line,
                        f"{path}.services[{number}]",
                        f"Service instance '{service.name}' not found (Overcast has no "
                        "service instances yet)",
                    )
                )
        if problems:
            raise ManifestError(problems, source=SOURCE)

    # --- the job ----------------------------------------------------------------------------

    async def _apply(self, context: JobContext) -> None:
        params = context.job.params
        caller = await load_caller(self.store, _identity(params["identity"]))
        manifest = parse_manifest(str(params["manifest"]), source=SOURCE)
        space_guid = context.job.target_guid
        applied = []
        for app in manifest.applications:
            found = await self.apply_app(caller, space_guid, app)
            applied.append(found.guid)
        await context.set_result(app_guids=applied)

    async def apply_app(self, caller: Caller, space_guid: str, manifest: AppManifest) -> App:
        app = await self._app(caller, space_guid, manifest)
        for process in _processes(manifest):
            await self._process(caller, app, process)
        await self._routes(caller, app, manifest)
        return app

    async def _app(self, caller: Caller, space_guid: str, manifest: AppManifest) -> App:
        lifecycle = (
            Lifecycle(buildpacks=manifest.buildpacks, stack=manifest.stack)
            if manifest.buildpacks is not None or manifest.stack is not None
            else None
        )
        metadata = manifest.metadata or ManifestMetadata()
        async with self.store.read() as tx:
            existing = await tx.apps.by_name(space_guid, manifest.name)
        if existing is None:
            return await self.apps.create(
                caller,
                manifest.name,
                space_guid,
                environment_variables=manifest.env,
                lifecycle=lifecycle,
                labels=metadata.labels,
                annotations=metadata.annotations,
            )
        app = existing
        if lifecycle is not None or metadata.labels or metadata.annotations:
            app = await self.apps.update(
                caller,
                app.guid,
                AppChanges(
                    lifecycle=lifecycle, labels=metadata.labels, annotations=metadata.annotations
                ),
            )
        if manifest.env:
            app, _ = await self.apps.patch_environment_variables(caller, app.guid, manifest.env)
        return app

    async def _process(self, caller: Caller, app: App, manifest: ProcessManifest) -> None:
        process = await self._ensure_process(app, manifest.type)
        scale = _scale(manifest)
        if any(value is not None for value in dataclasses.astuple(scale)):
            process = await self.processes.scale(caller, process.guid, scale)
        check = _health_check_change(manifest)
        changes = ProcessChanges(
            health_check=check if any(dataclasses.astuple(check)) else None,
        )
        if manifest.command is not None:
            changes = dataclasses.replace(changes, command=manifest.command)
        if changes != ProcessChanges():
            await self.processes.update(caller, process.guid, changes)

    async def _ensure_process(self, app: App, process_type: str) -> Process:
        async with self.store.write() as tx:
            process = await tx.processes.by_type(app.guid, process_type)
            if process is None:
                process = new_process(app.guid, process_type, self.clock.now())
                if process_type != "web":
                    # A type the droplet does not know yet runs nothing until it is scaled.
                    process = dataclasses.replace(process, instances=0)
                await tx.processes.add(process)
        return process

    async def _routes(self, caller: Caller, app: App, manifest: AppManifest) -> None:
        if manifest.no_route:
            await self._unmap_all(caller, app)
            return
        wanted: list[str] = [entry.route for entry in manifest.routes or ()]
        if not wanted and (manifest.random_route or manifest.default_route):
            if await self._has_routes(app):
                return
            domain = await self.default_domain(caller, app)
            host = random_host(app.name) if manifest.random_route else default_host(app.name)
            wanted = [f"{host}.{domain.name}"]
        options = {entry.route: entry for entry in manifest.routes or ()}
        for text in wanted:
            await self._map(caller, app, text, options.get(text))

    async def _has_routes(self, app: App) -> bool:
        async with self.store.read() as tx:
            return bool(await tx.routes.list_all({"app_guids": [app.guid]}))

    async def default_domain(self, caller: Caller, app: App) -> Domain:
        async with self.store.read() as tx:
            space = await tx.spaces.require(app.space_guid)
        return await self.orgs.default_domain(caller, space.org_guid)

    async def _map(self, caller: Caller, app: App, text: str, entry: RouteEntry | None) -> None:
        async with self.store.read() as tx:
            address = await resolve_route(tx, text)
            route = await tx.routes.by_address(address.domain.guid, address.host, address.path)
        if route is not None and route.space_guid != app.space_guid:
            raise Unprocessable(
                f"The app cannot be mapped to route {text} because the route exists in a "
                "different space."
            )
        if route is None:
            view = await self.routes.create(
                caller,
                space_guid=app.space_guid,
                domain_guid=address.domain.guid,
                host=address.host,
                path=address.path,
                load_balancing=entry.loadbalancing if entry else None,
            )
            route_guid = view.route.guid
        else:
            route_guid = route.guid
        protocol = entry.protocol if entry and entry.protocol else None
        await self.routes.add_destinations(
            caller, route_guid, [DestinationRequest(app_guid=app.guid, protocol=protocol)]
        )

    async def _unmap_all(self, caller: Caller, app: App) -> None:
        async with self.store.read() as tx:
            routes = await tx.routes.list_all({"app_guids": [app.guid]})
            destinations = await tx.destinations.of_routes([route.guid for route in routes])
        for destination in destinations:
            if destination.app_guid == app.guid:
                await self.routes.remove_destination(
                    caller, destination.route_guid, destination.guid
                )

    # --- GET /v3/apps/:g/manifest -----------------------------------------------------------

    async def of_app(self, caller: Caller, app_guid: str) -> str:
        async with self.store.read() as tx:
            app, space = await visible_app(tx, caller, app_guid)
            if not caller.permissions.can_see_space_secrets(space.guid):
                raise forbid()  # the manifest holds the environment variables
            processes = await tx.processes.of_app(app.guid)
            routes = await tx.routes.list_all({"app_guids": [app.guid]})
            domains = {
                route.domain_guid: await tx.domains.require(route.domain_guid) for route in routes
            }
        return render_manifest(
            Manifest(applications=(app_manifest(app, processes, routes, domains),))
        )


def app_manifest(
    app: App, processes: Sequence[Process], routes: Sequence[Route], domains: dict[str, Domain]
) -> AppManifest:
    """The manifest that would make this app as it is."""
    entries = tuple(
        RouteEntry(
            route=route_url(route.host, domains[route.domain_guid].name, route.path),
            loadbalancing=route.load_balancing.value if route.load_balancing else None,
        )
        for route in sorted(routes, key=lambda r: (r.host, r.path))
    )
    metadata = app.metadata
    return AppManifest(
        name=app.name,
        buildpacks=tuple(app.buildpacks) or None,
        stack=app.stack,
        env=dict(app.environment_variables) or None,
        routes=entries or None,
        no_route=None if entries else True,
        metadata=(
            ManifestMetadata(
                labels=dict(metadata.labels) or None,
                annotations=dict(metadata.annotations) or None,
            )
            if metadata.labels or metadata.annotations
            else None
        ),
        processes=tuple(
            _process_manifest(process)
            for process in sorted(processes, key=lambda p: (p.type != "web", p.type))
        ),
    )


def _process_manifest(process: Process) -> ProcessManifest:
    check = process.health_check
    return ProcessManifest(
        type=process.type,
        instances=process.instances,
        memory_in_mb=process.memory_in_mb,
        disk_in_mb=process.disk_in_mb,
        log_rate_limit_in_bytes_per_second=process.log_rate_limit_in_bytes_per_second,
        command=process.command,
        health_check_type=check.type,
        health_check_http_endpoint=check.endpoint,
        health_check_invocation_timeout=check.invocation_timeout,
        timeout=check.timeout,
    )


def _check_process(manifest: ProcessManifest) -> None:
    """The limits the process use cases enforce, checked before the job runs them."""
    check_scale(_scale(manifest))
    health_check_after(HealthCheck(), _health_check_change(manifest))
    command = manifest.command
    if command is not None and not (command.strip() and len(command) <= MAX_COMMAND_LENGTH):
        raise Unprocessable(f"Command must be between 1 and {MAX_COMMAND_LENGTH} characters")


def _scale(manifest: ProcessManifest) -> Scale:
    return Scale(
        instances=manifest.instances,
        memory_in_mb=manifest.memory_in_mb,
        disk_in_mb=manifest.disk_in_mb,
        log_rate_limit_in_bytes_per_second=manifest.log_rate_limit_in_bytes_per_second,
    )


def _health_check_change(manifest: ProcessManifest) -> HealthCheckChange:
    return HealthCheckChange(
        type=manifest.health_check_type.value if manifest.health_check_type else None,
        endpoint=manifest.health_check_http_endpoint,
        timeout=manifest.timeout,
        invocation_timeout=manifest.health_check_invocation_timeout,
    )


def _processes(manifest: AppManifest) -> list[ProcessManifest]:
    others = [p for p in manifest.processes or () if p.type != "web"]
    return [manifest.web_process(), *others]


async def resolve_route(tx: Tx, text: str) -> RouteAddress:
    """CF's reading of `host.domain/path`: the whole name if it is a domain (no host), else the
    first label is the host and the rest must be a domain."""
    try:
        name, path = split_route(text)
    except ValueError as error:
        raise Unprocessable(f"The route '{text}' is invalid: {error}") from None
    domain = await tx.domains.by_name(name)
    if domain is not None:
        return RouteAddress(text, domain, "", path)
    host, dot, rest = name.partition(".")
    domain = await tx.domains.by_name(rest) if dot else None
    if domain is None:
        raise Unprocessable(
            f"The route '{text}' did not match any existing domains (see `overcast domains`)."
        )
    return RouteAddress(text, domain, host, path)


def _identity_params(identity: Identity) -> dict[str, Any]:
    return {
        "guid": identity.guid,
        "name": identity.name,
        "kind": identity.kind,
        "scopes": list(identity.scopes),
    }


def _identity(params: dict[str, Any]) -> Identity:
    return Identity(
        guid=str(params["guid"]),
        name=str(params["name"]),
        kind=str(params["kind"]),
        scopes=tuple(str(scope) for scope in params["scopes"]),
    )
