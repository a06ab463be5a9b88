"""create-user, set-org-role, set-space-role, unset-org-role, unset-space-role."""

from __future__ import annotations

from typing import Annotated

import typer

from overcast.cli import render
from overcast.cli.context import add_commands, current
from overcast.cli.errors import CliError
from overcast.cli.org_commands import find_org, find_space
from overcast.cli.prompts import ask
from overcast.cli.roles import cli_role_name, org_role_type, space_role_type
from overcast.client import ApiError, OvercastClient
from overcast.client.resources import User

ROLE_JOB_TIMEOUT_SECONDS = 60.0
ORG_MEMBER_ROLE = "organization_user"

UserArg = Annotated[str, typer.Argument(help="Username.")]
OrgArg = Annotated[str, typer.Argument(help="Org name.")]
SpaceArg = Annotated[str, typer.Argument(help="Space name.")]
OrgRoleArg = Annotated[
    str, typer.Argument(help="OrgManager, OrgAuditor, BillingManager or OrgUser.")
]
SpaceRoleArg = Annotated[
    str,
    typer.Argument(help="SpaceManager, SpaceDeveloper, SpaceAuditor or SpaceSupporter."),
]


def create_user(
    username: UserArg,
    password: Annotated[
        str | None,
        typer.Option("-p", "--password", help="Prompted for (hidden) when absent."),
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an admin.")] = False,
) -> None:
    """Create a user who logs in with a password (admins only)."""
    ctx = current()
    with ctx.client() as client:
        secret = password if password is not None else ask("Password", secret=True, confirm=True)
        client.create_user(username, secret, admin=admin)
    render.line(f"Created {'admin ' if admin else ''}user {username}.")


def set_org_role(username: UserArg, org: OrgArg, role: OrgRoleArg) -> None:
    """Give a user a role in an org."""
    role_type = org_role_type(role)
    with current().client() as client:
        owner = find_org(client, org)
        if not _ensure_role(client, role_type, username, org_guid=owner["guid"]):
            render.line(f"{username} already has {cli_role_name(role_type)} in org {org}.")
            return
    render.line(f"Gave {username} the role {cli_role_name(role_type)} in org {org}.")


def set_space_role(username: UserArg, org: OrgArg, space: SpaceArg, role: SpaceRoleArg) -> None:
    """Give a user a role in a space (making them an OrgUser of its org first if needed)."""
    role_type = space_role_type(role)
    with current().client() as client:
        owner = find_org(client, org)
        target = find_space(client, owner, space)
        # A space role needs a role in the org, as in the cf CLI: OrgUser is the least one.
        _ensure_role(client, ORG_MEMBER_ROLE, username, org_guid=owner["guid"])
        if not _ensure_role(client, role_type, username, space_guid=target["guid"]):
            render.line(f"{username} already has {cli_role_name(role_type)} in space {space}.")
            return
    render.line(
        f"Gave {username} the role {cli_role_name(role_type)} in space {space} of org {org}."
    )


def _ensure_role(
    client: OvercastClient,
    role_type: str,
    username: str,
    *,
    org_guid: str | None = None,
    space_guid: str | None = None,
) -> bool:
    """Creates the role; False when the user already had it."""
    try:
        client.create_role(role_type, username=username, org_guid=org_guid, space_guid=space_guid)
    except ApiError as error:
        if error.has_title("CF-UniquenessError"):
            return False
        raise
    return True


def _find_user(client: OvercastClient, username: str) -> User:
    found = client.user_by_name(username)
    if found is None:
        raise CliError(f"User '{username}' not found")
    return found


def unset_org_role(username: UserArg, org: OrgArg, role: OrgRoleArg) -> None:
    """Take a role in an org away from a user."""
    role_type = org_role_type(role)
    with current().client() as client:
        owner = find_org(client, org)
        user = _find_user(client, username)
        roles = client.list_roles(
            types=[role_type], org_guids=[owner["guid"]], user_guids=[user["guid"]]
        )
        if not roles:
            raise CliError(f"{username} does not have {cli_role_name(role_type)} in org {org}")
        for held in roles:
            client.wait_for_job(client.delete_role(held["guid"]), timeout=ROLE_JOB_TIMEOUT_SECONDS)
    render.line(f"Took {cli_role_name(role_type)} in org {org} away from {username}.")


def unset_space_role(username: UserArg, org: OrgArg, space: SpaceArg, role: SpaceRoleArg) -> None:
    """Take a role in a space away from a user."""
    role_type = space_role_type(role)
    with current().client() as client:
        target = find_space(client, find_org(client, org), space)
        user = _find_user(client, username)
        roles = client.list_roles(
            types=[role_type], space_guids=[target["guid"]], user_guids=[user["guid"]]
        )
        if not roles:
            raise CliError(f"{username} does not have {cli_role_name(role_type)} in space {space}")
        for held in roles:
            client.wait_for_job(client.delete_role(held["guid"]), timeout=ROLE_JOB_TIMEOUT_SECONDS)
    render.line(f"Took {cli_role_name(role_type)} in space {space} away from {username}.")


def register(app: typer.Typer) -> None:
    add_commands(
        app,
        "Users and roles",
        {
            "create-user": create_user,
            "set-org-role": set_org_role,
            "set-space-role": set_space_role,
            "unset-org-role": unset_org_role,
            "unset-space-role": unset_space_role,
        },
    )
