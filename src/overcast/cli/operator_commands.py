"""events, jobs, queues, and the OAuth clients: clients, create-client, delete-client."""

from __future__ import annotations

from collections.abc import Mapping
from secrets import token_urlsafe
from typing import Annotated, Any

import typer

from overcast.cli import render
from overcast.cli.app_commands import find_app
from overcast.cli.context import add_commands, current
from overcast.cli.errors import CliError
from overcast.cli.prompts import ask, confirm_deletion
from overcast.cli.secrets import HIDDEN, is_secret_name
from overcast.client.resources import AuditEvent, JobDetail, OAuthClient

SHORT_GUID = 8
# 32 random bytes: 43 URL-safe characters, well over the server's minimum of 16.
GENERATED_SECRET_BYTES = 32
# The scopes the server lets a client have (controller.clients.GRANTABLE_SCOPES, which the
# CLI may not import; a unit test keeps the two equal). Only for the help: the server decides.
GRANTABLE_AUTHORITIES = (
    "cloud_controller.admin",
    "cloud_controller.admin_read_only",
    "cloud_controller.read",
    "cloud_controller.write",
    "openid",
    "uaa.user",
)
READ_SECRET_FROM_STDIN = "-"

Limit = Annotated[int, typer.Option("--limit", min=1, max=5000, help="Show at most this many.")]
Force = Annotated[bool, typer.Option("-f", "--force", help="Do not ask for confirmation.")]
ClientId = Annotated[str, typer.Argument(help="Client id: 1-255 of A-Z a-z 0-9 . _ -")]


def describe_event(data: Mapping[str, Any]) -> str:
    """A one-line summary of an audit event's data. Nested objects (such as environment
    variables) show their keys only, and secret-named values are hidden: events are widely
    readable, values never belong in them."""
    request = data.get("request")
    fields = {key: value for key, value in data.items() if key != "request"}
    if isinstance(request, Mapping):
        fields.update(request)
    parts = []
    for key, value in fields.items():
        if value is None or key.endswith("_guid") or value in ({}, []):
            continue
        if isinstance(value, Mapping):
            parts.append(f"{key}: {', '.join(sorted(str(name) for name in value))}")
        elif is_secret_name(key):
            parts.append(f"{key}: {HIDDEN}")
        elif isinstance(value, list):
            parts.append(f"{key}: {', '.join(str(item) for item in value)}")
        else:
            parts.append(f"{key}: {value}")
    return "; ".join(parts)


def _event_row(event: AuditEvent) -> tuple[str, str, str, str, str]:
    target = event["target"]
    return (
        event["created_at"],
        event["type"],
        event["actor"]["name"] or event["actor"]["guid"],
        f"{target['type']} {target['name'] or target['guid']}",
        describe_event(event.get("data") or {}),
    )


def events(
    name: Annotated[str | None, typer.Argument(help="App (default: the whole space).")] = None,
    limit: Limit = 50,
) -> None:
    """Audit events of an app, or of the targeted space; newest first."""
    ctx = current()
    space = ctx.require_space()
    with ctx.client() as client:
        if name is not None:
            found = find_app(ctx, client, name)
            listed = client.list_audit_events(target_guids=[found["guid"]], limit=limit)
        else:
            listed = client.list_audit_events(space_guids=[space.guid], limit=limit)
    if not listed:
        render.line(f"No events for {f'app {name}' if name else f'space {space.name}'}.")
        return
    render.table(
        ("time", "event", "actor", "target", "description"), (_event_row(event) for event in listed)
    )


def _stages(job: JobDetail) -> str:
    return (
        "\n".join(
            f"{stage['name']}: {stage['state']} {stage['progress']}%" for stage in job["stages"]
        )
        or "-"
    )


def _job_row(job: JobDetail) -> tuple[str, ...]:
    errors = "; ".join(error["detail"] for error in job["errors"])
    target = job["target"]
    return (
        job["guid"][:SHORT_GUID],
        job["created_at"],
        job["operation"],
        job["state"],
        f"{target['type']} {target['guid'][:SHORT_GUID]}",
        job["queue"],
        f"{job['attempts']}/{job['max_attempts']}",
        _stages(job),
        errors,
    )


def jobs(
    limit: Limit = 20,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="Only jobs in this state (repeatable).")
    ] = None,
) -> None:
    """Recent jobs with their stages, newest first (admins only)."""
    with current().client() as client:
        found = client.list_job_details(states=state, limit=limit)
    if not found:
        render.line("No jobs.")
        return
    render.table(
        ("job", "created", "operation", "state", "target", "queue", "attempts", "stages", "errors"),
        (_job_row(job) for job in found),
    )


def queues() -> None:
    """Job queues with their depth and concurrency (admins only)."""
    with current().client() as client:
        found = client.list_queues()
    render.table(
        ("queue", "concurrency", "queued", "running", "waiting", "oldest queued", "done/hour"),
        (
            (
                queue["name"],
                str(queue["concurrency"]),
                str(queue["queued"]),
                str(queue["running"]),
                str(queue["waiting"]),
                queue["oldest_queued_at"] or "-",
                str(queue["completed_last_hour"]),
            )
            for queue in found
        ),
    )


def _client_row(found: OAuthClient) -> tuple[str, str, str, str]:
    return (
        found["client_id"],
        ", ".join(found["authorities"]) or "-",
        ", ".join(found["authorized_grant_types"]),
        found["created_at"],
    )


def clients() -> None:
    """OAuth clients (client_credentials logins) with their authorities (admins only)."""
    with current().client() as client:
        found = client.list_oauth_clients()
    if not found:
        render.line("No clients.")
        return
    render.table(
        ("client", "authorities", "grant types", "created"), (_client_row(c) for c in found)
    )


def create_client(
    client_id: ClientId,
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            help="The client secret, 16 characters or more. `--secret -` reads it from stdin "
            "(a hidden prompt on a terminal), out of shell history and the process list. "
            "Without --secret a strong random secret is generated and printed once.",
        ),
    ] = None,
    authority: Annotated[
        list[str] | None,
        typer.Option(
            "--authority",
            help="A scope the client gets; repeatable, at least one. Grantable: "
            f"{', '.join(GRANTABLE_AUTHORITIES)}. `overcast health` needs "
            "cloud_controller.admin.",
        ),
    ] = None,
) -> None:
    """Create an OAuth client that logs in with client_credentials (admins only)."""
    if not authority:
        raise CliError(
            f"Give at least one --authority (grantable: {', '.join(GRANTABLE_AUTHORITIES)})"
        )
    with current().client() as client:
        generated = token_urlsafe(GENERATED_SECRET_BYTES) if secret is None else None
        if generated is not None:
            chosen = generated
        elif secret == READ_SECRET_FROM_STDIN:
            chosen = ask("Client secret", secret=True, confirm=True)
        else:
            chosen = secret or ""
        created = client.create_oauth_client(client_id, chosen, authority)
    authorities = ", ".join(created["authorities"])
    render.line(f"Created client {created['client_id']} with authorities {authorities}.")
    if generated is not None:
        # The only place the secret is ever shown: the server keeps just its hash.
        render.line("Client secret (store it now, it is not shown again):")
        render.line(generated)


def delete_client(client_id: ClientId, force: Force = False) -> None:
    """Delete an OAuth client; its tokens stop working at once (admins only)."""
    with current().client() as client:
        if all(found["client_id"] != client_id for found in client.list_oauth_clients()):
            raise CliError(f"Client '{client_id}' not found")
        if not confirm_deletion(f"client '{client_id}'", force=force):
            render.line("Nothing deleted.")
            return
        client.delete_oauth_client(client_id)
    render.line(f"Deleted client {client_id}.")


def register(app: typer.Typer) -> None:
    add_commands(app, "Audit", {"events": events})
    # `domains` lives with the route commands (route_commands).
    add_commands(
        app,
        "Operators",
        {
            "jobs": jobs,
            "queues": queues,
            "clients": clients,
            "create-client": create_client,
            "delete-client": delete_client,
        },
    )
