"""`overcast cell`: one cell agent, on NATS, running instances until SIGINT/SIGTERM.

On exit it leaves its instances running unless `cell.stop_instances_on_exit` is set: the next
cell process on the same work dir re-adopts them, so restarting or upgrading a cell loses no
request."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from overcast.bus.factory import bus_from_settings
from overcast.cell.agent import CellAgent
from overcast.core.logging import configure_logging, get_logger
from overcast.core.settings import CellSection, CellSettings, stdout_is_terminal

log = get_logger(__name__)


def cell_work_dir(data_dir: Path, cell: CellSection) -> Path:
    if cell.work_dir is not None:
        return cell.work_dir.expanduser()
    return data_dir / (f"cell-{cell.id}" if cell.id else "cell")


async def run_cell(settings: CellSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bus = bus_from_settings(
        settings.bus, f"cell-{settings.cell.id or settings.instance_name or 'overcast'}"
    )
    await bus.connect()
    work_dir = cell_work_dir(settings.data_dir, settings.cell)
    agent = CellAgent(settings.cell, bus=bus, work_dir=work_dir)
    await agent.start()
    # For supervisors and tests: the cell is heartbeating and answering commands.
    ready_file = work_dir / "ready"
    ready_file.write_text(agent.cell_id + "\n")
    log.info("cell.ready", cell_id=agent.cell_id, zone=settings.cell.zone)
    try:
        await stop.wait()
    finally:
        ready_file.unlink(missing_ok=True)
        await agent.stop(stop_instances=settings.cell.stop_instances_on_exit)
        await bus.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        log.info("cell.stopped")


def main(settings: CellSettings) -> int:
    configure_logging(settings.log_level, settings.log_format, terminal=stdout_is_terminal())
    if settings.bus.kind == "memory":
        print(
            "overcast cell: a standalone cell needs a shared bus (set OVERCAST_BUS__KIND=nats); "
            "the in-memory bus is for `overcast up`",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(run_cell(settings))
    except OSError as error:
        print(f"overcast cell: {error.strerror or error}", file=sys.stderr)
        return 1
    return 0
