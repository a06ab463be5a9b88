"""orgs, create-org, delete-org, spaces, create-space, delete-space."""

from __future__ import annotations

from typing import Annotated

import typer

from overcast.cli import render
from overcast.cli.context import CliContext, add_commands, current
from overcast.cli.errors import CliError
from overcast.cli.prompts import confirm_deletion
from overcast.client import OvercastClient
from overcast.client.resources import Organization, Space

DELETE_TIMEOUT_SECONDS = 300.0

Force = Annotated[bool, typer.Option("-f", "--force", help="Do not ask for confirmation.")]
OrgOption = Annotated[
    str | None, typer.Option("-o", "--org", help="Org (default: the targeted org).")
]


def find_org(client: OvercastClient, name: str) -> Organization:
    found = client.org_by_name(name)
    if found is None:
        raise CliError(f"Org '{name}' not found")
    return found


def find_space(client: OvercastClient, org: Organization, name: str) -> Space:
    found = client.space_by_name(org["guid"], name)
    if found is None:
        raise CliError(f"Space '{name}' not found in org '{org['name']}'")
    return found


def _org_named_or_targeted(
    ctx: CliContext, client: OvercastClient, name: str | None
) -> Organization:
    if name is not None:
        return find_org(client, name)
    return client.get_org(ctx.require_org().guid)


def orgs() -> None:
    """List the orgs you can see."""
    with current().client() as client:
        found = client.list_orgs()
    if not found:
        render.line("No orgs found.")
        return
    render.table(
        ("name", "guid", "created"),
        ((org["name"], org["guid"], org["created_at"]) for org in found),
    )


def create_org(name: Annotated[str, typer.Argument(help="Name of the new org.")]) -> None:
    """Create an org (admins only)."""
    with current().client() as client:
        client.create_org(name)
    render.line(f"Created org {name}. Target it with: overcast target -o {name}")


def delete_org(
    name: Annotated[str, typer.Argument(help="Org to delete.")], force: Force = False
) -> None:
    """Delete an org with everything in it; waits until it is gone."""
    ctx = current()
    with ctx.client() as client:
        org = find_org(client, name)
        if not confirm_deletion(f"org '{name}' and all its spaces and apps", force=force):
            render.line("Nothing deleted.")
            return
        client.wait_for_job(client.delete_org(org["guid"]), timeout=DELETE_TIMEOUT_SECONDS)
    if ctx.config.org and ctx.config.org.guid == org["guid"]:
        ctx.config.org = ctx.config.space = None
        ctx.save()
    render.line(f"Deleted org {name}.")


def spaces(org: OrgOption = None) -> None:
    """List the spaces of the targeted org (or of -o ORG)."""
    ctx = current()
    with ctx.client() as client:
        owner = _org_named_or_targeted(ctx, client, org)
        found = client.list_spaces(org_guid=owner["guid"])
    if not found:
        render.line(f"No spaces in org {owner['name']}.")
        return
    render.table(
        ("name", "guid", "created"),
        ((space["name"], space["guid"], space["created_at"]) for space in found),
    )


def create_space(
    name: Annotated[str, typer.Argument(help="Name of the new space.")], org: OrgOption = None
) -> None:
    """Create a space in the targeted org (or in -o ORG)."""
    ctx = current()
    with ctx.client() as client:
        owner = _org_named_or_targeted(ctx, client, org)
        client.create_space(name, owner["guid"])
    render.line(
        f"Created space {name} in org {owner['name']}. "
        f"Target it with: overcast target -o {owner['name']} -s {name}"
    )


def delete_space(
    name: Annotated[str, typer.Argument(help="Space to delete.")],
    org: OrgOption = None,
    force: Force = False,
) -> None:
    """Delete a space with its apps; waits until it is gone."""
    ctx = current()
    with ctx.client() as client:
        owner = _org_named_or_targeted(ctx, client, org)
        space = find_space(client, owner, name)
        if not confirm_deletion(f"space '{name}' and all its apps", force=force):
            render.line("Nothing deleted.")
            return
        job_guid = client.delete_space(space["guid"])
        client.wait_for_job(job_guid, timeout=DELETE_TIMEOUT_SECONDS)
    if ctx.config.space and ctx.config.space.guid == space["guid"]:
        ctx.config.space = None
        ctx.save()
    render.line(f"Deleted space {name} from org {owner['name']}.")


def register(app: typer.Typer) -> None:
    add_commands(
        app,
        "Orgs and spaces",
        {
            "orgs": orgs,
            "create-org": create_org,
            "delete-org": delete_org,
            "spaces": spaces,
            "create-space": create_space,
            "delete-space": delete_space,
        },
    )
