"""login, logout, target."""

from __future__ import annotations

from typing import Annotated

import typer

from overcast.cli import render
from overcast.cli.config import Named
from overcast.cli.context import CliContext, add_commands, current
from overcast.cli.errors import CliError
from overcast.cli.prompts import ask
from overcast.client import OAuthError, OvercastClient
from overcast.client.resources import Organization, Space


def named(resource: Organization | Space) -> Named:
    return Named(guid=resource["guid"], name=resource["name"])


def login(
    api: Annotated[
        str | None,
        typer.Option(
            "-a", "--api", help="API URL (default: the saved target, else OVERCAST_API_URL)."
        ),
    ] = None,
    username: Annotated[
        str | None, typer.Option("-u", "--username", help="Prompted for when absent.")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            "-p",
            "--password",
            help="Prompted for (hidden) when absent; piped input is read as one line.",
        ),
    ] = None,
) -> None:
    """Log in and save the session (also targets the org and space if you have only one)."""
    ctx = current()
    api_url = ctx.api_url_for_login(api)
    username = username or ask("Username")
    password = password if password is not None else ask("Password", secret=True)
    with OvercastClient(api_url) as client:
        try:
            tokens = client.login_password(username, password)
        except OAuthError as error:
            raise CliError(f"Login failed: {error.error_description}") from None
        ctx.start_session(api_url, username, tokens)
        _target_the_only_choice(ctx, client)
    render.line(f"Logged in to {api_url} as {username}.")
    show_target(ctx)


def _target_the_only_choice(ctx: CliContext, client: OvercastClient) -> None:
    """Like the cf CLI: one org (and one space in it) is targeted for you."""
    orgs = client.list_orgs()
    if len(orgs) != 1:
        return
    ctx.config.org = named(orgs[0])
    spaces = client.list_spaces(org_guid=orgs[0]["guid"])
    if len(spaces) == 1:
        ctx.config.space = named(spaces[0])
    ctx.save()


def logout() -> None:
    """Forget the saved tokens and target (the API URL is kept for the next login)."""
    ctx = current()
    ctx.config.end_session()
    ctx.save()
    render.line("Logged out.")


def target(
    org: Annotated[str | None, typer.Option("-o", "--org", help="Org to target.")] = None,
    space: Annotated[str | None, typer.Option("-s", "--space", help="Space to target.")] = None,
) -> None:
    """Show the target, or choose the org and space later commands work in.

    Choosing an org alone clears the space, unless the org has exactly one space: that one
    is targeted."""
    ctx = current()
    ctx.require_login()
    if org is not None or space is not None:
        with ctx.client() as client:
            if org is not None:
                _target_org(ctx, client, org, keep_space_choice=space is not None)
            if space is not None:
                _target_space(ctx, client, space)
        ctx.save()
    show_target(ctx)


def _target_org(
    ctx: CliContext, client: OvercastClient, name: str, *, keep_space_choice: bool
) -> None:
    found = client.org_by_name(name)
    if found is None:
        raise CliError(f"Org '{name}' not found")
    ctx.config.org, ctx.config.space = named(found), None
    if keep_space_choice:
        return
    spaces = client.list_spaces(org_guid=found["guid"])
    if len(spaces) == 1:
        ctx.config.space = named(spaces[0])


def _target_space(ctx: CliContext, client: OvercastClient, name: str) -> None:
    org = ctx.require_org()
    found = client.space_by_name(org.guid, name)
    if found is None:
        raise CliError(f"Space '{name}' not found in org '{org.name}'")
    ctx.config.space = named(found)


def show_target(ctx: CliContext) -> None:
    config = ctx.config
    render.key_values(
        [
            ("API", config.api_url or "(none)"),
            ("User", config.username or "(not logged in)"),
            ("Org", config.org.name if config.org else "(none: overcast target -o ORG)"),
            ("Space", config.space.name if config.space else "(none: overcast target -s SPACE)"),
        ]
    )


def register(app: typer.Typer) -> None:
    add_commands(app, "Session", {"login": login, "logout": logout, "target": target})
