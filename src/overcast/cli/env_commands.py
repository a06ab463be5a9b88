"""env, set-env, unset-env. Values of secret-looking variables are hidden unless --reveal."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from overcast.cli import render
from overcast.cli.app_commands import AppName, find_app
from overcast.cli.context import add_commands, current
from overcast.cli.secrets import count_hidden, mask_value
from overcast.client.resources import AppEnv

VarName = Annotated[str, typer.Argument(help="Variable name.")]
RESTART_HINT = "Run 'overcast restart {app}' for the change to take effect."


def env(
    name: AppName,
    reveal: Annotated[bool, typer.Option("--reveal", help="Show secret values too.")] = False,
) -> None:
    """Show an app's environment: system-provided, user-provided and group variables."""
    ctx = current()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        environment = client.app_env(found["guid"])
    hidden = _show_env(environment, reveal=reveal)
    if hidden:
        render.line(f"{hidden} secret value(s) shown as [hidden]; use --reveal to show them.")


def _show_env(environment: AppEnv, *, reveal: bool) -> int:
    """Prints the groups in the cf CLI's order; returns how many values were hidden."""
    hidden = 0
    system = {
        **environment.get("system_env_json", {}),
        **environment.get("application_env_json", {}),
    }
    groups: list[tuple[str, dict[str, Any], bool]] = [
        ("System-provided", system, True),
        ("User-provided", dict(environment.get("environment_variables", {})), False),
        ("Running environment variable group", environment.get("running_env_json", {}), False),
        ("Staging environment variable group", environment.get("staging_env_json", {}), False),
    ]
    for title, variables, always in groups:
        if not variables and not always:
            continue
        render.heading(f"{title}:")
        if not variables:
            render.line("  (none)")
        for variable, value in sorted(variables.items()):
            shown = mask_value(variable, value, reveal=reveal)
            hidden += count_hidden(value, shown)
            render.line(f"  {variable}: {_display(shown)}")
        render.line()
    return hidden


def _display(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, sort_keys=True).replace("\n", "\n  ")
    if isinstance(value, str):
        return value
    return json.dumps(value)


def set_env(
    name: AppName,
    variable: VarName,
    value: Annotated[str, typer.Argument(help="Value (never echoed back).")],
) -> None:
    """Set one user-provided environment variable of an app."""
    ctx = current()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        client.update_environment_variables(found["guid"], {variable: value})
    render.line(f"Set {variable} for app {name}. " + RESTART_HINT.format(app=name))


def unset_env(name: AppName, variable: VarName) -> None:
    """Remove one user-provided environment variable of an app."""
    ctx = current()
    with ctx.client() as client:
        found = find_app(ctx, client, name)
        if variable not in client.environment_variables(found["guid"]):
            render.line(f"Variable {variable} was not set for app {name}; nothing changed.")
            return
        client.update_environment_variables(found["guid"], {variable: None})
    render.line(f"Removed {variable} from app {name}. " + RESTART_HINT.format(app=name))


def register(app: typer.Typer) -> None:
    add_commands(app, "Apps", {"env": env, "set-env": set_env, "unset-env": unset_env})
