"""The user-facing commands. Server commands (`up`, `controller`) are added by cmd.main."""

from __future__ import annotations

import typer


def build_cli() -> typer.Typer:
    return typer.Typer(
        name="overcast",
        help="Overcast: push apps, run them, route to them.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
