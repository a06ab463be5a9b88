"""apps, create-app, delete, start, stop, restart, scale (`app` is in instance_commands)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Annotated

import typer

from overcast.cli import render
from overcast.cli.context import CliContext, add_commands, current
from overcast.cli.errors import CliError
from overcast.cli.prompts import confirm_deletion
from overcast.cli.units import format_mb, parse_size_mb
from overcast.client import OvercastClient
from overcast.client.resources import App, Process

DELETE_TIMEOUT_SECONDS = 300.0

AppName = Annotated[str, typer.Argument(help="App name (in the targeted space).")]


def find_app(ctx: CliContext, client: OvercastClient, name: str) -> App:
    space = ctx.require_space()
    found = client.app_by_name(space.guid, name)
    if found is None:
        raise CliError(f"App '{name}' not found in space '{space.name}'")
    return found


def _web_first(processes: Sequence[Process]) -> list[Process]:
    return sorted(processes, key=lambda process: (process["type"] != "web", process["type"]))


def _process_columns(processes: Sequence[Process]) -> tuple[str, str, str, str]:
    """(types, instances, memory, disk): one line per process type, web first."""
    ordered = _web_first(processes)
    return (
        "\n".join(p["type"] for p in ordered),
        "\n".join(str(p["instances"]) for p in ordered),
        "\n".join(format_mb(p["memory_in_mb"]) for p in ordered),
        "\n".join(format_mb(p["disk_in_mb"]) for p in ordered),
    )


def apps() -> None:
    """List the apps of the targeted space with their desired scale."""
    ctx = current()
    space = ctx.require_space()
    with ctx.client() as client:
        found = client.list_apps(space_guid=space.guid)
        processes = client.list_processes(space_guids=[space.guid]) if found else []
    if not found:
        render.line(f"No apps in space {space.name}.")
        return
    by_app: dict[str, list[Process]] = defaultdict(list)
    for process in processes:
        app_ref = process["relationships"]["app"]["data"]
        if app_ref is not None:
            by_app[app_ref["guid"]].append(process)
    render.table(
        ("name", "state", "process", "instances", "memory", "disk"),
        ((app["name"], app["state"], *_process_columns(by_app[app["guid"]])) for app in found),
    )


def create_app(name: Annotated[str, typer.Argument(help="Name of the new app.")]) -> None:
    """Create an app (stopped, with a `web` process) in the targeted space."""
    ctx = current()
    space = ctx.require_space()
    with ctx.client() as client:
        client.create_app(name, space.guid)
    render.line(f"Created app {name} in space {space.name}.")


def delete(
    name: AppName,
    force: Annotated[
        bool, typer.Option("-f", "--force", help="Do not ask for confirmation.")
    ] = False,
) -> None:
    """Delete an app; waits until it is gone."""
    ctx = current()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        if not confirm_deletion(f"app '{name}'", force=force):
            render.line("Nothing deleted.")
            return
        client.wait_for_job(client.delete_app(found["guid"]), timeout=DELETE_TIMEOUT_SECONDS)
    render.line(f"Deleted app {name}.")


def start(name: AppName) -> None:
    """Start an app (its desired state becomes STARTED)."""
    _run_action(name, "start", "Started")


def stop(name: AppName) -> None:
    """Stop an app (its desired state becomes STOPPED)."""
    _run_action(name, "stop", "Stopped")


def restart(name: AppName) -> None:
    """Stop and start an app, so that changed environment variables take effect."""
    _run_action(name, "restart", "Restarted")


def _run_action(name: str, action: str, done: str) -> None:
    ctx = current()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        actions = {
            "start": client.start_app,
            "stop": client.stop_app,
            "restart": client.restart_app,
        }
        changed = actions[action](found["guid"])
    render.line(f"{done} app {name}: state {changed['state']}.")


def scale(
    name: AppName,
    instances: Annotated[
        int | None, typer.Option("-i", "--instances", min=0, help="Number of instances.")
    ] = None,
    memory: Annotated[
        str | None, typer.Option("-m", "--memory", help="Memory per instance, e.g. 512M, 1G.")
    ] = None,
    disk: Annotated[
        str | None, typer.Option("-k", "--disk", help="Disk per instance, e.g. 1G.")
    ] = None,
    process_type: Annotated[str, typer.Option("--process", help="Process type.")] = "web",
) -> None:
    """Change (or, without options, show) the instances, memory and disk of a process."""
    memory_mb = parse_size_mb(memory, what="Memory") if memory is not None else None
    disk_mb = parse_size_mb(disk, what="Disk") if disk is not None else None
    ctx = current()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        process = _process_of(client, found, process_type)
        verb = "App"
        if instances is not None or memory_mb is not None or disk_mb is not None:
            process = client.scale_process(
                process["guid"], instances=instances, memory_in_mb=memory_mb, disk_in_mb=disk_mb
            )
            verb = "Scaled app"
    render.line(
        f"{verb} {name}, process {process['type']}: {process['instances']} instances, "
        f"{format_mb(process['memory_in_mb'])} memory, "
        f"{format_mb(process['disk_in_mb'])} disk."
    )


def _process_of(client: OvercastClient, found: App, process_type: str) -> Process:
    for process in client.app_processes(found["guid"]):
        if process["type"] == process_type:
            return process
    raise CliError(f"App '{found['name']}' has no process '{process_type}'")


def register(app_: typer.Typer) -> None:
    add_commands(
        app_,
        "Apps",
        {
            "apps": apps,
            "create-app": create_app,
            "delete": delete,
            "start": start,
            "stop": stop,
            "restart": restart,
            "scale": scale,
        },
    )
