"""`overcast controller`: the API, token endpoint and job workers as one process (run several
against one PostgreSQL and NATS for a cluster)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from overcast.cmd.wiring import build_controller, start_api, stop_api, write_private_file
from overcast.core.logging import configure_logging, get_logger
from overcast.core.settings import ControllerSettings, stdout_is_terminal

log = get_logger(__name__)


async def run_controller(settings: ControllerSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    parts = await build_controller(settings)
    if settings.instance_name:
        await parts.engine.recover_leases_of(f"{settings.instance_name}:")
    await parts.start()
    server, server_task = await start_api(parts.app, settings.api.host, settings.api.port)
    try:
        api_url = settings.api.external_url or f"http://{settings.api.host}:{server.bound_port()}"
        parts.controller.set_api_url(api_url)
        (settings.data_dir / "api-url").write_text(api_url + "\n")
        log.info("controller.ready", api_url=api_url)
        if parts.admin.generated_password:
            password_file = settings.data_dir / "admin-password"
            write_private_file(password_file, parts.admin.generated_password + "\n")
            log.info("controller.admin_password_written", path=str(password_file))
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, server_task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    finally:
        await stop_api(server, server_task)
        await parts.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        log.info("controller.stopped")


def main(settings: ControllerSettings) -> int:
    configure_logging(settings.log_level, settings.log_format, terminal=stdout_is_terminal())
    try:
        asyncio.run(run_controller(settings))
    except OSError as error:
        print(f"overcast controller: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0
