"""Audit events: every mutating call writes one, in the same transaction as the change, with
secrets masked."""

from __future__ import annotations

import dataclasses
from typing import Any

from overcast.controller.access import Caller
from overcast.core.clock import Clock
from overcast.core.ids import new_guid
from overcast.models.resources import Actor, App, AuditEvent, Space
from overcast.models.secrets import mask
from overcast.store.base import Tx


async def record(
    tx: Tx,
    clock: Clock,
    caller: Caller,
    event_type: str,
    *,
    target: tuple[str, str, str],
    request: dict[str, Any] | None = None,
    space_guid: str | None = None,
    org_guid: str | None = None,
    **data: Any,
) -> AuditEvent:
    """`target` is (guid, type, name)."""
    return await record_as(
        tx,
        clock,
        caller.actor,
        event_type,
        target=target,
        request=request,
        space_guid=space_guid,
        org_guid=org_guid,
        **data,
    )


async def record_as(
    tx: Tx,
    clock: Clock,
    actor: Actor,
    event_type: str,
    *,
    target: tuple[str, str, str],
    request: dict[str, Any] | None = None,
    space_guid: str | None = None,
    org_guid: str | None = None,
    **data: Any,
) -> AuditEvent:
    """An event whose actor is not an API caller (a process that crashed, say)."""
    target_guid, target_type, target_name = target
    payload = dict(data)
    if request is not None:
        payload["request"] = request
    event = AuditEvent(
        guid=new_guid(),
        type=event_type,
        actor=actor,
        target_guid=target_guid,
        target_type=target_type,
        target_name=target_name,
        created_at=clock.now(),
        data=mask(payload),
        space_guid=space_guid,
        org_guid=org_guid,
    )
    return await tx.events.add(event)


async def record_app_event(
    tx: Tx, clock: Clock, caller: Caller, event_type: str, app: App, space: Space, **data: Any
) -> AuditEvent:
    """An event about an app, scoped to its space and org."""
    return await record(
        tx,
        clock,
        caller,
        event_type,
        target=(app.guid, "app", app.name),
        space_guid=space.guid,
        org_guid=space.org_guid,
        **data,
    )


def changes_request(changes: object) -> dict[str, Any]:
    """The given fields of a changes dataclass, as an event's `request`."""
    assert dataclasses.is_dataclass(changes) and not isinstance(changes, type)
    return {key: value for key, value in dataclasses.asdict(changes).items() if value is not None}
