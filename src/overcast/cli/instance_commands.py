"""app (with its running instances), restart-instance, cells, enable-cell, disable-cell.

`overcast cell` runs a cell agent (a server command), so the operator commands on cells are
`enable-cell ID` and `disable-cell ID`, in the cf CLI's verb-noun style."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from overcast.cli import render
from overcast.cli.app_commands import AppName, find_app
from overcast.cli.context import add_commands, current
from overcast.cli.errors import CliError
from overcast.cli.units import format_mb
from overcast.client import ApiError, OvercastClient
from overcast.client.resources import App, Cell, Droplet, InstanceStats, Process

STAT_COLUMNS = ("#", "state", "uptime", "cpu", "memory", "disk", "host:port", "details")
_UNITS = ("B", "K", "M", "G", "T")


def format_bytes(count: int | None) -> str:
    """Binary units the way `cf app` shows them: 4096 -> 4K, 12345678 -> 11.8M, 2**30 -> 1G."""
    if count is None:
        return "-"
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            text = f"{value:.1f}" if value < 100 and unit != "B" else f"{value:.0f}"
            return text.removesuffix(".0") + unit
        value /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """12 -> 12s, 75 -> 1m15s, 3725 -> 1h02m, 90000 -> 1d01h."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _used_of(used: int | None, quota: int | None) -> str:
    if used is None and quota is None:
        return "-"
    return f"{format_bytes(used)} of {format_bytes(quota)}"


def stat_row(stat: InstanceStats) -> tuple[str, ...]:
    usage = stat.get("usage") or {}
    running = stat["state"] == "RUNNING"
    ports = stat.get("instance_ports") or []
    address = f"{stat['host']}:{ports[0]['external']}" if stat.get("host") and ports else "-"
    cpu = usage.get("cpu")
    return (
        f"#{stat['index']}",
        stat["state"].lower(),
        format_duration(stat.get("uptime") or 0) if running else "-",
        f"{cpu * 100:.1f}%" if cpu is not None and usage else "-",
        _used_of(usage.get("mem"), stat.get("mem_quota")),
        _used_of(usage.get("disk"), stat.get("disk_quota")),
        address,
        stat.get("details") or "",
    )


def _web_first(processes: Sequence[Process]) -> list[Process]:
    return sorted(processes, key=lambda process: (process["type"] != "web", process["type"]))


def app(name: AppName) -> None:
    """Show an app, its droplet, and the instances of each of its processes."""
    ctx = current()
    org, space = ctx.require_org(), ctx.require_space()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        droplet = client.current_droplet(found["guid"])
        routes = [route["url"] for route in client.app_routes(found["guid"])]
        processes = _web_first(client.app_processes(found["guid"]))
        stats = {process["guid"]: _stats_or_reason(client, process) for process in processes}
    data = found["lifecycle"]["data"]
    stack = (droplet.get("stack") if droplet else None) or data.get("stack") or "-"
    render.key_values(
        [
            ("name", found["name"]),
            ("state", found["state"]),
            ("guid", found["guid"]),
            ("org / space", f"{org.name} / {space.name}"),
            ("stack", stack),
            ("routes", ", ".join(sorted(routes)) or "-"),
            ("droplet", f"{droplet['guid']} ({droplet['state']})" if droplet else "none"),
            ("buildpacks", _buildpacks(droplet, data.get("buildpacks") or [])),
            ("created", found["created_at"]),
            ("updated", found["updated_at"]),
        ]
    )
    for process in processes:
        render.line()
        _show_process(process, stats[process["guid"]])


def _buildpacks(droplet: Droplet | None, asked: list[str]) -> str:
    """What staged the current droplet (name and version, as `cf app` shows), else what the
    app asks for."""
    used = (droplet.get("buildpacks") if droplet else None) or []
    if used:
        return ", ".join(
            " ".join(part for part in (item.get("name"), item.get("version")) if part)
            for item in used
        )
    return ", ".join(asked) or "-"


def _stats_or_reason(client: OvercastClient, process: Process) -> list[InstanceStats] | str:
    """The process's instances, or why they cannot be shown (the app is still listed)."""
    try:
        return client.process_stats(process["guid"])
    except ApiError as error:
        if error.status == 401:
            raise
        return f"instances unavailable: {error.detail}"


def _show_process(process: Process, stats: list[InstanceStats] | str) -> None:
    running = (
        sum(1 for stat in stats if stat["state"] == "RUNNING") if isinstance(stats, list) else 0
    )
    render.key_values(
        [
            ("type", process["type"]),
            ("instances", f"{running}/{process['instances']}"),
            (
                "memory / disk",
                f"{format_mb(process['memory_in_mb'])} / {format_mb(process['disk_in_mb'])}",
            ),
            ("health check", process["health_check"]["type"]),
        ]
    )
    if isinstance(stats, str):
        render.line(stats)
    elif not stats:
        render.line("There are no running instances of this process.")
    else:
        render.table(STAT_COLUMNS, (stat_row(stat) for stat in stats))


def _process_of(client: OvercastClient, found: App, process_type: str) -> Process:
    for process in client.app_processes(found["guid"]):
        if process["type"] == process_type:
            return process
    raise CliError(f"App '{found['name']}' has no process '{process_type}'")


def restart_instance(
    name: AppName,
    index: Annotated[int, typer.Argument(min=0, help="Index of the instance (0, 1, ...).")],
    process_type: Annotated[str, typer.Option("--process", help="Process type.")] = "web",
) -> None:
    """Restart one instance of an app's process (it is replaced; the others keep running)."""
    ctx = current()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        process = _process_of(client, found, process_type)
        if index >= process["instances"]:
            raise CliError(
                f"App '{name}' process '{process_type}' has {process['instances']} "
                f"instance(s): index {index} does not exist"
            )
        client.restart_instance(process["guid"], index)
    render.line(f"Restarting instance {index} of process {process_type} of app {name}.")


def set_droplet(
    name: AppName,
    path: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A droplet tarball: .tgz holding app/ and staging_info.yml.",
        ),
    ],
) -> None:
    """Upload a ready-made droplet and make it the app's current droplet (start or restart
    the app to run it)."""
    ctx = current()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        droplet = client.create_droplet(found["guid"])
        client.wait_for_job(client.upload_droplet(droplet["guid"], path))
        client.set_current_droplet(found["guid"], droplet["guid"])
    render.line(f"Droplet {droplet['guid']} is now the current droplet of app {name}.")


def _resources(allocated: int, capacity: int) -> str:
    return f"{format_mb(allocated)} / {format_mb(capacity)}"


def _cell_row(cell: Cell) -> tuple[str, ...]:
    allocated, capacity = cell["allocated"], cell["capacity"]
    return (
        cell["guid"],
        cell["zone"],
        cell["state"],
        cell["host"],
        str(cell["instances"]),
        _resources(allocated["memory_in_mb"], capacity["memory_in_mb"]),
        _resources(allocated["disk_in_mb"], capacity["disk_in_mb"]),
        f"{allocated['instances']} / {capacity['instances']}",
        ", ".join(cell.get("tags") or []) or "-",
        cell["last_heartbeat_at"],
    )


def cells() -> None:
    """List the cells with their state, load and last heartbeat (admins only)."""
    with current().client() as client:
        found = client.list_cells()
    if not found:
        render.line("No cells have reported in.")
        return
    render.table(
        (
            "cell",
            "zone",
            "state",
            "host",
            "instances",
            "memory",
            "disk",
            "slots",
            "tags",
            "last heartbeat",
        ),
        (_cell_row(cell) for cell in sorted(found, key=lambda cell: cell["guid"])),
    )


CellId = Annotated[str, typer.Argument(help="Cell id (see `overcast cells`).")]


def _set_cell_state(cell_id: str, state: str, done: str) -> None:
    with current().client() as client:
        cell = client.set_cell_state(cell_id, state)
    render.line(f"{done} cell {cell['guid']}: state {cell['state']}.")


def disable_cell(cell_id: CellId) -> None:
    """Place no new instances on a cell (those it runs keep running) (admins only)."""
    _set_cell_state(cell_id, "DISABLED", "Disabled")


def enable_cell(cell_id: CellId) -> None:
    """Put a disabled cell back in service (admins only)."""
    _set_cell_state(cell_id, "ENABLED", "Enabled")


def register(app_: typer.Typer) -> None:
    add_commands(
        app_,
        "Apps",
        {"app": app, "restart-instance": restart_instance, "set-droplet": set_droplet},
    )
    add_commands(
        app_,
        "Operators",
        {"cells": cells, "disable-cell": disable_cell, "enable-cell": enable_cell},
    )
