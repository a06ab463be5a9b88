"""Domains: shared ones (every org may route under them) and private ones (one org's)."""

from __future__ import annotations

import dataclasses

from overcast.controller.access import Caller
from overcast.controller.base import UseCase
from overcast.models.errors import NotFound
from overcast.models.query import ListQuery, Page
from overcast.models.resources import Domain


class Domains(UseCase):
    def _visible_filters(self, caller: Caller, query: ListQuery) -> ListQuery:
        orgs = caller.permissions.visible_org_guids()
        if orgs is None:
            return query
        filters = {**query.filters, "usable_by_organization_guids": sorted(orgs)}
        return dataclasses.replace(query, filters=filters)

    async def page(self, caller: Caller, query: ListQuery) -> Page[Domain]:
        async with self.store.read() as tx:
            return await tx.domains.page(self._visible_filters(caller, query))

    async def get(self, caller: Caller, guid: str) -> Domain:
        async with self.store.read() as tx:
            domain = await tx.domains.get(guid)
        if domain is None or (
            domain.org_guid is not None and not caller.permissions.can_see_org(domain.org_guid)
        ):
            raise NotFound.of("Domain")
        return domain
