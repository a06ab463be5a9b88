"""Building the controller's parts from settings. Used by the composition roots (`up`,
`controller`) and by tests that need a real controller in process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from overcast.api.app import create_app
from overcast.auth.service import AuthService, load_or_create_signing_keys
from overcast.auth.tokens import TokenIssuer
from overcast.bus.base import Bus
from overcast.bus.factory import bus_from_settings
from overcast.controller.apps import DEFAULT_STACK
from overcast.controller.bootstrap import AdminBootstrap, ensure_admin, ensure_shared_domain
from overcast.controller.buildpacks import InstalledBuildpack
from overcast.controller.controller import Controller
from overcast.controller.health import HealthActions, HealthManagement
from overcast.controller.package_archive import ArchiveRules
from overcast.core.clock import Clock, SystemClock
from overcast.core.logging import get_logger
from overcast.core.settings import ControllerSettings, HealthSection
from overcast.health.service import HealthOptions
from overcast.jobs.engine import JobEngine, default_owner
from overcast.staging.archives import ArchiveLimits, check_zip, entry_path
from overcast.staging.archives.common import EntryTree
from overcast.staging.runner import builtin_buildpacks
from overcast.store.blobs import DirectoryBlobStore
from overcast.store.sql.store import SqlStore

log = get_logger(__name__)


@dataclass
class ControllerParts:
    settings: ControllerSettings
    store: SqlStore
    bus: Bus
    engine: JobEngine
    controller: Controller
    app: FastAPI
    admin: AdminBootstrap

    async def start(self) -> None:
        """Listen to the cells, then run jobs (a scheduling job needs the cells' view)."""
        await self.controller.start()
        await self.engine.start()

    async def close(self) -> None:
        await self.controller.log_buffer.stop()
        await self.engine.stop()
        await self.controller.stop()
        await self.bus.close()
        await self.store.close()


def write_private_file(path: Path, text: str) -> None:
    """Create (or replace) a file only its owner can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


async def build_controller(
    settings: ControllerSettings,
    *,
    clock: Clock | None = None,
    bus: Bus | None = None,
    owner: str | None = None,
) -> ControllerParts:
    clock = clock or SystemClock()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await SqlStore.open(
        settings.database_url(), clock, pool_size=settings.store.pool_size, echo=settings.store.echo
    )
    if bus is None:
        bus = bus_from_settings(settings.bus, f"controller-{settings.instance_name or 'overcast'}")
    await bus.connect()
    jobs = settings.jobs
    engine = JobEngine(
        store,
        clock,
        owner=owner or default_owner(settings.instance_name),
        lease_seconds=jobs.lease_seconds,
        poll_interval=jobs.poll_interval_seconds,
        workers=jobs.workers,
        retry_delay_seconds=jobs.retry_delay_seconds,
        queue_limits=jobs.queues,
    )
    keys = await load_or_create_signing_keys(store, clock)
    issuer = TokenIssuer(
        keys,
        clock,
        issuer=settings.auth.issuer or "overcast",
        access_ttl_seconds=settings.auth.access_token_ttl_seconds,
        refresh_ttl_seconds=settings.auth.refresh_token_ttl_seconds,
    )
    controller = Controller(
        store,
        clock,
        engine,
        AuthService(store, issuer),
        bus,
        log_settings=settings.logs,
        blobs=DirectoryBlobStore(settings.blobstore_dir()),
        blob_settings=settings.blobstore,
        staging_settings=settings.staging,
        buildpacks=installed_buildpacks(),
        # The staging layer's entry rules (the same ones cells and buildpacks are held to) gate
        # every uploaded package, every path a client names, and every package written out.
        package_rules=ArchiveRules(
            zip_check=functools.partial(
                check_zip,
                limits=ArchiveLimits(
                    max_entries=settings.blobstore.max_package_files,
                    max_bytes=settings.blobstore.max_package_expanded_bytes,
                    max_file_bytes=settings.blobstore.max_package_file_bytes,
                ),
            ),
            path_check=entry_path,
            new_tree=lambda: EntryTree(ArchiveLimits()),
        ),
    )
    if settings.api.external_url:
        controller.set_api_url(settings.api.external_url)
    # Every controller keeps every app's recent log lines (not a queue group).
    await controller.log_buffer.start()
    admin = await ensure_admin(
        store, clock, settings.auth.admin_username, settings.auth.admin_password.get_secret_value()
    )
    await ensure_shared_domain(store, clock, settings.apps_domain)
    app = create_app(
        controller,
        external_url=settings.api.external_url,
        max_body_bytes=settings.api.max_body_bytes,
        max_upload_bytes=settings.blobstore.max_droplet_bytes,
    )
    return ControllerParts(
        settings=settings,
        store=store,
        bus=bus,
        engine=engine,
        controller=controller,
        app=app,
        admin=admin,
    )


def installed_buildpacks() -> list[InstalledBuildpack]:
    """The built-in buildpacks as the API lists them (their files date them)."""
    installed = []
    for buildpack in builtin_buildpacks():
        stamp = (buildpack.path / "bin" / "compile").stat().st_mtime
        installed.append(
            InstalledBuildpack(
                name=buildpack.name,
                position=buildpack.position,
                version=buildpack.version,
                stack=DEFAULT_STACK,
                created_at=datetime.fromtimestamp(int(stamp), UTC),
            )
        )
    return installed


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: the composition root owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield

    def bound_port(self) -> int:
        for server in self.servers:
            for sock in server.sockets:
                port: int = sock.getsockname()[1]
                return port
        raise RuntimeError("the API server is not listening")


async def start_api(app: FastAPI, host: str, port: int) -> tuple[ApiServer, asyncio.Task[None]]:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
        server_header=False,
    )
    server = ApiServer(config)
    task = asyncio.create_task(server.serve(), name="api-server")
    while not server.started:
        if task.done():
            task.result()  # raises the bind error
            raise RuntimeError("the API server stopped while starting")
        await asyncio.sleep(0.02)
    return server, task


async def stop_api(server: ApiServer, task: asyncio.Task[None]) -> None:
    # Live log streams (SSE) never finish on their own: end them, so the server can drain.
    app = server.config.app
    controller = getattr(getattr(app, "state", None), "controller", None)
    if isinstance(controller, Controller):
        controller.log_buffer.end_streams()
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)


class InProcessControllerPort:
    """The health service's ControllerPort when it runs beside the controller (the micro
    cloud): the same checks as POST /v3/x/health/actions, without HTTP."""

    def __init__(self, health: HealthManagement) -> None:
        self._health = health

    async def desired(self) -> dict[str, Any]:
        return await self._health.desired()

    async def act(self, request: dict[str, Any]) -> dict[str, Any]:
        results = await self._health.act(HealthActions.model_validate(request))
        return dataclasses.asdict(results)


def health_options(section: HealthSection) -> HealthOptions:
    return HealthOptions(
        desired_refresh_seconds=section.desired_refresh_seconds,
        converge_interval_seconds=section.converge_interval_seconds,
        sweep_seconds=section.sweep_seconds,
        inflight_seconds=section.inflight_seconds,
        warm_up_seconds=section.warm_up_seconds,
    )
