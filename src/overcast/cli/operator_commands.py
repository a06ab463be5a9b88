"""events, jobs, queues."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from overcast.cli import render
from overcast.cli.app_commands import find_app
from overcast.cli.context import add_commands, current
from overcast.cli.secrets import HIDDEN, is_secret_name
from overcast.client.resources import AuditEvent, JobDetail

SHORT_GUID = 8

Limit = Annotated[int, typer.Option("--limit", min=1, max=5000, help="Show at most this many.")]


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
    name: Annotated[str | None, typer.Argument(help="App [default: the whole space].")] = None,
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


def register(app: typer.Typer) -> None:
    add_commands(app, "Audit", {"events": events})
    # `domains` lives with the route commands (route_commands).
    add_commands(app, "Operators", {"jobs": jobs, "queues": queues})
