"""The user-facing commands, added to the `overcast` Typer app by `overcast.cmd.main`.

Every command is a thin layer over `overcast.client`: find things by name in the target,
call the API, print the result. Failures become one line on stderr and exit status 1
(see `overcast.cli.context.guarded`)."""

from __future__ import annotations

import typer

from overcast.cli import (
    app_commands,
    env_commands,
    instance_commands,
    log_commands,
    operator_commands,
    org_commands,
    push_commands,
    route_commands,
    session_commands,
    staging_commands,
    user_commands,
)

_MODULES = (
    session_commands,
    org_commands,
    app_commands,
    push_commands,
    route_commands,
    instance_commands,
    log_commands,
    staging_commands,
    env_commands,
    user_commands,
    operator_commands,
)


def register(app: typer.Typer) -> None:
    for module in _MODULES:
        module.register(app)
