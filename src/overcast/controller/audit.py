"""Reading audit events: a caller sees the events of the spaces and orgs they can see."""

from __future__ import annotations

import dataclasses

from overcast.controller.access import Caller, visible_space_guids
from overcast.controller.base import UseCase
from overcast.models.errors import NotFound
from overcast.models.query import ListQuery, Page
from overcast.models.resources import AuditEvent


class AuditEvents(UseCase):
    async def _visible_scopes(self, caller: Caller) -> list[str] | None:
        if caller.admin:
            return None
        async with self.store.read() as tx:
            spaces = await visible_space_guids(tx, caller) or frozenset()
        orgs = caller.permissions.visible_org_guids() or frozenset()
        return sorted(spaces | orgs)

    async def page(self, caller: Caller, query: ListQuery) -> Page[AuditEvent]:
        scopes = await self._visible_scopes(caller)
        if scopes is not None:
            query = dataclasses.replace(query, filters={**query.filters, "visible_in": scopes})
        async with self.store.read() as tx:
            return await tx.events.page(query)

    async def get(self, caller: Caller, guid: str) -> AuditEvent:
        async with self.store.read() as tx:
            event = await tx.events.get(guid)
        if event is None:
            raise NotFound.of("Event")
        scopes = await self._visible_scopes(caller)
        if scopes is not None:
            scope = event.space_guid or event.org_guid
            if scope is None or scope not in scopes:
                raise NotFound.of("Event")
        return event
