"""The `overcast` command: the client commands plus the server processes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import typer

from overcast.cli import instance_commands
from overcast.cli.app import build_cli
from overcast.core.settings import (
    DEFAULT_API_PORT,
    DEFAULT_ROUTER_PORT,
    CellSettings,
    ComponentSettings,
    ControllerSettings,
    HealthSettings,
    MicroCloudSettings,
    RouterSettings,
    load_settings,
)
from overcast.models.errors import OvercastError

SettingsT = TypeVar("SettingsT", bound=ComponentSettings)

app = build_cli()

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="YAML settings file (also OVERCAST_CONFIG).")
]


def _load(cls: type[SettingsT], config: Path | None, **overrides: object) -> SettingsT:
    try:
        return load_settings(cls, config_file=config, **overrides)
    except OvercastError as error:
        raise typer.BadParameter(error.detail) from None


@app.command(rich_help_panel="Servers")
def up(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Where the micro cloud keeps its state [default: ~/.overcast/data]."),
    ] = None,
    api_port: Annotated[
        int | None,
        typer.Option(help=f"API port; 0 picks a free one [default: {DEFAULT_API_PORT}]."),
    ] = None,
    router_port: Annotated[
        int | None,
        typer.Option(help=f"Router port; 0 picks a free one [default: {DEFAULT_ROUTER_PORT}]."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Run the whole platform in this process (SQLite, in-memory bus) until Ctrl-C."""
    from overcast.cmd import micro

    overrides: dict[str, object] = {"data_dir": data_dir, "router_port": router_port}
    if api_port is not None:
        overrides["api"] = {"port": api_port}
    raise typer.Exit(micro.main(_load(MicroCloudSettings, config, **overrides)))


@app.command(rich_help_panel="Servers")
def controller(config: ConfigOption = None) -> None:
    """Run the API and job workers (settings from OVERCAST_* and --config)."""
    from overcast.cmd import controller as controller_root

    raise typer.Exit(controller_root.main(_load(ControllerSettings, config)))


@app.command(rich_help_panel="Servers")
def router(config: ConfigOption = None) -> None:
    """Run a router: apps' HTTP traffic, routes from the cells (settings OVERCAST_ROUTER__*)."""
    from overcast.cmd import router as router_root

    raise typer.Exit(router_root.main(_load(RouterSettings, config)))


@app.command(rich_help_panel="Servers")
def health(config: ConfigOption = None) -> None:
    """Run the health service: restarts crashes, replaces lost cells' instances (settings
    OVERCAST_HEALTH__*)."""
    from overcast.cmd import health as health_root

    raise typer.Exit(health_root.main(_load(HealthSettings, config)))


cell_commands = typer.Typer(
    name="cell",
    invoke_without_command=True,
    help="Run a cell agent (no subcommand), or enable/disable a cell (admins).",
)


@cell_commands.callback()
def cell(context: typer.Context, config: ConfigOption = None) -> None:
    """Run a cell agent: app instances, on a shared NATS bus (settings OVERCAST_CELL__*).

    `overcast cell disable ID` / `overcast cell enable ID` take a cell out of placement and
    put it back (it keeps running what it has)."""
    if context.invoked_subcommand is not None:
        return
    from overcast.cmd import cell as cell_root

    raise typer.Exit(cell_root.main(_load(CellSettings, config)))


cell_commands.command("disable")(instance_commands.disable_cell)
cell_commands.command("enable")(instance_commands.enable_cell)
app.add_typer(cell_commands, rich_help_panel="Servers")


def main() -> None:
    from overcast.cli.commands import register

    register(app)
    app()
