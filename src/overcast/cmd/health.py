"""`overcast health`: the health service on the shared bus (NATS), acting through the API as an
admin OAuth client, until SIGINT/SIGTERM. Its /health and /metrics are on its status port."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from overcast.bus.factory import bus_from_settings
from overcast.cmd.wiring import health_options
from overcast.core.logging import configure_logging, get_logger
from overcast.core.settings import HealthSettings, stdout_is_terminal
from overcast.health.api_port import ApiControllerPort
from overcast.health.metrics import health_status_server
from overcast.health.service import HealthService

log = get_logger(__name__)


async def run_health(settings: HealthSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    section = settings.health
    bus = bus_from_settings(settings.bus, f"health-{settings.instance_name or 'overcast'}")
    await bus.connect()
    port = ApiControllerPort(
        section.api_url, section.client_id, section.client_secret.get_secret_value()
    )
    service = HealthService(bus, port, health_options(section))
    status = health_status_server(service)
    await service.start()
    status_port = await status.start(section.status_host, section.status_port)
    log.info("health.listening", status_port=status_port)
    try:
        await stop.wait()
    finally:
        await status.stop()
        await service.stop()
        port.close()
        await bus.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)


def main(settings: HealthSettings) -> int:
    configure_logging(settings.log_level, settings.log_format, terminal=stdout_is_terminal())
    section = settings.health
    if settings.bus.kind == "memory":
        print(
            "overcast health: a standalone health service needs a shared bus (set "
            "OVERCAST_BUS__KIND=nats); `overcast up` runs one in process",
            file=sys.stderr,
        )
        return 2
    if not (section.api_url and section.client_id and section.client_secret.get_secret_value()):
        print(
            "overcast health: set OVERCAST_HEALTH__API_URL, OVERCAST_HEALTH__CLIENT_ID and "
            "OVERCAST_HEALTH__CLIENT_SECRET (an OAuth client with cloud_controller.admin)",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(run_health(settings))
    except OSError as error:
        print(f"overcast health: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0
