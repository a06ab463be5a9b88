"""Spaces."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from overcast.controller.access import (
    Caller,
    forbid,
    restrict,
    visible_org,
    visible_space,
    visible_space_guids,
)
from overcast.controller.base import MetadataPatch, UseCase
from overcast.controller.events import changes_request, record
from overcast.core.ids import new_guid
from overcast.models.jobs import Job
from overcast.models.metadata import patch_metadata
from overcast.models.query import ListQuery, Page
from overcast.models.resources import Metadata, Space
from overcast.models.validation import check_name


@dataclass(frozen=True)
class SpaceChanges:
    name: str | None = None
    labels: MetadataPatch = None
    annotations: MetadataPatch = None


class Spaces(UseCase):
    async def create(
        self,
        caller: Caller,
        name: str,
        org_guid: str,
        *,
        labels: MetadataPatch = None,
        annotations: MetadataPatch = None,
    ) -> Space:
        check_name(name, what="Space")
        now = self.clock.now()
        async with self.store.write() as tx:
            org = await visible_org(tx, caller, org_guid)
            if not caller.permissions.can_manage_org(org.guid):
                raise forbid()
            space = Space(
                guid=new_guid(),
                name=name,
                org_guid=org.guid,
                created_at=now,
                updated_at=now,
                metadata=patch_metadata(Metadata(), labels, annotations),
            )
            await tx.spaces.add(space)
            await record(
                tx,
                self.clock,
                caller,
                "audit.space.create",
                target=(space.guid, "space", space.name),
                space_guid=space.guid,
                org_guid=org.guid,
                request={"name": name},
            )
        return space

    async def get(self, caller: Caller, guid: str) -> Space:
        async with self.store.read() as tx:
            return await visible_space(tx, caller, guid)

    async def get_many(self, caller: Caller, guids: list[str]) -> list[Space]:
        """For `include=space`: only what the caller may see."""
        async with self.store.read() as tx:
            allowed = await visible_space_guids(tx, caller)
            wanted = sorted(set(guids) if allowed is None else set(guids) & allowed)
            return await tx.spaces.list_all({"guids": wanted})

    async def page(self, caller: Caller, query: ListQuery) -> Page[Space]:
        async with self.store.read() as tx:
            allowed = await visible_space_guids(tx, caller)
            filters = restrict(query.filters, "guids", allowed)
            return await tx.spaces.page(dataclasses.replace(query, filters=filters))

    async def update(self, caller: Caller, guid: str, changes: SpaceChanges) -> Space:
        if changes.name is not None:
            check_name(changes.name, what="Space")
        async with self.store.write() as tx:
            space = await visible_space(tx, caller, guid)
            if not caller.permissions.can_manage_space(space.guid, space.org_guid):
                raise forbid()
            _, after = await tx.spaces.update(
                guid,
                lambda current: dataclasses.replace(
                    current,
                    name=current.name if changes.name is None else changes.name,
                    metadata=patch_metadata(current.metadata, changes.labels, changes.annotations),
                ),
            )
            await record(
                tx,
                self.clock,
                caller,
                "audit.space.update",
                target=(after.guid, "space", after.name),
                space_guid=after.guid,
                org_guid=after.org_guid,
                request=changes_request(changes),
            )
        return after

    async def delete(self, caller: Caller, guid: str) -> Job:
        async with self.store.write() as tx:
            space = await visible_space(tx, caller, guid)
            if not caller.permissions.can_manage_org(space.org_guid):
                raise forbid()
            job = await self.engine.submit_in(
                tx,
                "space.delete",
                target_type="space",
                target_guid=space.guid,
                creator=self.creator(caller),
            )
            await record(
                tx,
                self.clock,
                caller,
                "audit.space.delete-request",
                target=(space.guid, "space", space.name),
                space_guid=space.guid,
                org_guid=space.org_guid,
            )
        self.engine.wake()
        return job
