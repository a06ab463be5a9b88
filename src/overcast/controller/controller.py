"""The controller: every use case, wired over one store, clock and job engine."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from overcast.auth.identity import Identity
from overcast.auth.service import AuthService
from overcast.bus.base import Bus
from overcast.controller.access import Caller, load_caller
from overcast.controller.apps import Apps
from overcast.controller.audit import AuditEvents
from overcast.controller.buildpacks import Buildpacks, InstalledBuildpack
from overcast.controller.builds import Builds
from overcast.controller.cells import CellDirectory
from overcast.controller.clients import Clients
from overcast.controller.deletion import Deletions
from overcast.controller.domains import Domains
from overcast.controller.droplets import Droplets
from overcast.controller.health import HealthManagement
from overcast.controller.instances import Instances
from overcast.controller.jobs import Jobs
from overcast.controller.logs import LogBuffer, Logs
from overcast.controller.manifests import Manifests
from overcast.controller.orgs import Organizations
from overcast.controller.package_archive import ArchiveRules, PackageLimits
from overcast.controller.packages import Packages
from overcast.controller.processes import Processes
from overcast.controller.roles import Roles
from overcast.controller.routes import Routes
from overcast.controller.scheduler import Scheduler
from overcast.controller.spaces import Spaces
from overcast.controller.users import Users
from overcast.core.clock import Clock
from overcast.core.settings import BlobstoreSettings, LogSettings, StagingSettings
from overcast.jobs.engine import JobEngine
from overcast.store.base import Store
from overcast.store.blobs import BlobStore, DirectoryBlobStore


class Controller:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        engine: JobEngine,
        auth: AuthService,
        bus: Bus,
        *,
        log_settings: LogSettings | None = None,
        blobs: BlobStore | None = None,
        blob_settings: BlobstoreSettings | None = None,
        requester: str = "controller",
        package_rules: ArchiveRules,
        staging_settings: StagingSettings | None = None,
        buildpacks: Sequence[InstalledBuildpack] = (),
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.engine = engine
        self.auth = auth
        parts = (store, clock, engine)
        self.orgs = Organizations(*parts)
        self.spaces = Spaces(*parts)
        self.apps = Apps(*parts)
        self.processes = Processes(*parts)
        self.roles = Roles(*parts)
        self.users = Users(*parts)
        self.domains = Domains(*parts)
        # Routes (and the jobs deleting routes and domains); `routes.routes_changed` tells the
        # routing tier which processes' uris changed.
        self.routes = Routes(*parts)
        for operation in self.routes.operations():
            engine.register(operation)
        self.audit_events = AuditEvents(*parts)
        self.jobs = Jobs(*parts)
        self.clients = Clients(*parts)
        # Application logs: the recent-lines buffer (started by the composition root) and the
        # `API` lines apps and processes write about their changes.
        logs = log_settings or LogSettings()
        self.log_buffer = LogBuffer(
            bus,
            clock,
            lines_per_app=logs.lines_per_app,
            max_apps=logs.max_apps,
            listener_queue=logs.listener_queue_lines,
            keepalive_seconds=logs.keepalive_seconds,
        )
        self.logs = Logs(store, self.log_buffer)
        self.apps.logs = self.log_buffer
        self.processes.logs = self.log_buffer
        # Droplets and their blobstore (a throwaway directory when none is given: tests).
        blob_config = blob_settings or BlobstoreSettings()
        self.droplets = Droplets(
            *parts,
            blobs=blobs or DirectoryBlobStore(Path(tempfile.mkdtemp(prefix="overcast-blobs-"))),
            max_droplet_bytes=blob_config.max_droplet_bytes,
            signed_url_ttl_seconds=blob_config.signed_url_ttl_seconds,
        )
        for operation in self.droplets.operations():
            engine.register(operation)
        engine.listeners.append(self.droplets.on_job_finished)
        # Packages (app source) share the blobstore; their files are content-addressed there.
        self.packages = Packages(
            *parts,
            blobs=self.droplets.blobs,
            max_package_bytes=blob_config.max_package_bytes,
            limits=PackageLimits(
                max_file_bytes=blob_config.max_package_file_bytes,
                max_expanded_bytes=blob_config.max_package_expanded_bytes,
                max_files=blob_config.max_package_files,
            ),
            max_resource_matches=blob_config.max_resource_matches,
            signed_url_ttl_seconds=blob_config.signed_url_ttl_seconds,
            rules=package_rules,
            file_grace_seconds=blob_config.file_grace_seconds,
            sweep_interval_seconds=blob_config.sweep_interval_seconds,
        )
        for operation in self.packages.operations():
            engine.register(operation)
        engine.listeners.append(self.packages.on_job_finished)
        # Actual state: the cells' reports, and turning desired state into instances on them.
        self.directory = CellDirectory(bus, requester=requester)
        self.scheduler = Scheduler(store, clock, bus, self.directory, self.droplets, engine)
        # Instances register their process's routes; a mapping change reaches running ones.
        self.scheduler.routes = self.routes
        self.routes.routes_changed = self.scheduler.push_routes
        self.apps.uris_of_processes = self.routes.uris_of_processes
        for operation in self.scheduler.operations():
            engine.register(operation)
        # The health manager's requests, checked against desired state before any cell hears.
        self.health = HealthManagement(*parts, scheduler=self.scheduler, directory=self.directory)
        self.instances = Instances(
            *parts, directory=self.directory, scheduler=self.scheduler, health=self.health
        )
        # Staging: builds run on cells chosen by placement and end with a droplet.
        self.buildpacks = Buildpacks(buildpacks)
        self.builds = Builds(
            *parts,
            packages=self.packages,
            droplets=self.droplets,
            directory=self.directory,
            scheduler=self.scheduler,
            settings=staging_settings or StagingSettings(),
            buildpacks=self.buildpacks,
            logs=self.log_buffer,
        )
        for operation in self.builds.operations():
            engine.register(operation)
        # Manifests (apply_manifest, an app's manifest): made of the use cases above.
        self.manifests = Manifests(
            *parts,
            orgs=self.orgs,
            apps=self.apps,
            processes=self.processes,
            routes=self.routes,
            buildpacks=self.buildpacks,
        )
        for operation in self.manifests.operations():
            engine.register(operation)
        deletions = Deletions(store, stop_app_instances=self.scheduler.stop_app_instances)
        for operation in deletions.operations():
            engine.register(operation)

    async def start(self) -> None:
        """Start listening to the cells (the job engine is started by the caller), and bring
        back what should run after a restart."""
        await self.directory.start()
        await self.scheduler.resume_started_apps()
        self.packages.start_sweeping()

    async def stop(self) -> None:
        await self.packages.stop_sweeping()
        await self.directory.stop()

    def set_api_url(self, url: str) -> None:
        self.apps.api_url = url
        self.droplets.api_url = url.rstrip("/")
        self.packages.api_url = url.rstrip("/")
        self.scheduler.api_url = url
        self.domains.api_url = url
        self.routes.api_url = url

    async def caller(self, authorization: str | None) -> Caller:
        """Authenticate a bearer token and load what its holder may do."""
        identity: Identity = await self.auth.authenticate(authorization)
        return await load_caller(self.store, identity)
