"""`overcast up`: the micro cloud. Every component in one process, on SQLite and the memory
bus, in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from overcast.cell.agent import CellAgent
from overcast.cmd.cell import cell_work_dir
from overcast.cmd.wiring import (
    InProcessControllerPort,
    build_controller,
    health_options,
    start_api,
    stop_api,
    write_private_file,
)
from overcast.core.logging import configure_logging, get_logger
from overcast.core.settings import MicroCloudSettings, stdout_is_terminal
from overcast.health.service import HealthService
from overcast.jobs.engine import default_owner
from overcast.router.service import RouterPorts, RouterService

log = get_logger(__name__)

MICRO_INSTANCE = "micro"
# The id of the micro cloud's one cell, unless configured.
MICRO_CELL = "micro"


def _banner(
    api_url: str,
    settings: MicroCloudSettings,
    password_file: Path | None,
    cell_id: str,
    router: RouterPorts,
) -> str:
    login = f"overcast login -a {api_url} -u {settings.auth.admin_username}"
    where = (
        f"the password is in {password_file}"
        if password_file
        else "use the password you configured"
    )
    return "\n".join(
        [
            "",
            "Overcast micro cloud is ready.",
            f"  API:          {api_url}",
            f"  Apps:         http://<app>.{settings.apps_domain}:{router.http}/ "
            f"(router status on port {router.status})",
            f"  Cell:         {cell_id} (zone {settings.cell.zone})",
            f"  Data:         {settings.data_dir}",
            f"  Log in:       {login}   ({where})",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


async def run_micro_cloud(
    settings: MicroCloudSettings, *, ready: asyncio.Event | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    parts = await build_controller(settings, owner=default_owner(MICRO_INSTANCE))
    # A restarted micro cloud resumes its own unfinished jobs at once.
    await parts.engine.recover_leases_of(f"{MICRO_INSTANCE}:")
    await parts.start()
    # The micro cloud's one cell shares the controller's in-process bus.
    cell_settings = settings.cell
    if not cell_settings.id:
        cell_settings = cell_settings.model_copy(update={"id": MICRO_CELL})
    cell = CellAgent(
        cell_settings, bus=parts.bus, work_dir=cell_work_dir(settings.data_dir, settings.cell)
    )
    await cell.start()
    router = RouterService(
        settings.router.model_copy(update={"port": settings.router_port}),
        parts.bus,
        access_log=settings.router.access_log or settings.data_dir / "router" / "access.log",
    )
    router_ports = await router.start()
    # The one cell is in this process: once its round is heard the router has every route, so
    # it need not answer 503 for a whole register interval (a fresh micro cloud serves at once).
    await router.ready_once_heard(
        await cell.register_routes(), within=settings.router.register_interval_seconds
    )
    # The health service: restarts crashed instances with back-off, acting on the controller
    # in process (the same checks as its API).
    health = HealthService(
        parts.bus, InProcessControllerPort(parts.controller.health), health_options(settings.health)
    )
    await health.start()
    server, server_task = await start_api(parts.app, settings.api.host, settings.api.port)
    try:
        port = server.bound_port()
        api_url = settings.api.external_url or f"http://{settings.api.host}:{port}"
        parts.controller.set_api_url(api_url)
        password_file = settings.data_dir / "admin-password"
        if parts.admin.generated_password:
            write_private_file(password_file, parts.admin.generated_password + "\n")
        (settings.data_dir / "api-url").write_text(api_url + "\n")
        (settings.data_dir / "router-url").write_text(
            f"http://{settings.router.host}:{router_ports.http}\n"
        )
        log.info("micro.ready", api_url=api_url, apps_domain=settings.apps_domain)
        print(
            _banner(
                api_url,
                settings,
                password_file if password_file.exists() else None,
                cell.cell_id,
                router_ports,
            ),
            flush=True,
        )
        if ready is not None:
            ready.set()
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, server_task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        log.info("micro.stopping")
        await stop_api(server, server_task)
        await health.stop()
        await cell.stop()
        await router.stop()
        await parts.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        log.info("micro.stopped")


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One micro cloud per data directory: a second one would fight over the same files."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "overcast.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirBusy(data_dir) from None
        yield


class DataDirBusy(Exception):
    pass


def main(settings: MicroCloudSettings) -> int:
    configure_logging(settings.log_level, settings.log_format, terminal=stdout_is_terminal())
    try:
        with data_dir_lock(settings.data_dir):
            asyncio.run(run_micro_cloud(settings))
    except DataDirBusy:
        print(
            f"overcast up: another micro cloud is already running with data dir "
            f"{settings.data_dir}",
            file=sys.stderr,
        )
        return 1
    except OSError as error:
        print(f"overcast up: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0
