"""Organizations."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from overcast.controller.access import Caller, forbid, restrict, visible_org
from overcast.controller.base import MetadataPatch, UseCase
from overcast.controller.events import changes_request, record
from overcast.core.ids import new_guid
from overcast.models.errors import NotFound
from overcast.models.jobs import Job
from overcast.models.metadata import patch_metadata
from overcast.models.query import ListQuery, Page
from overcast.models.resources import Domain, Metadata, Organization
from overcast.models.validation import check_name


@dataclass(frozen=True)
class OrgChanges:
    name: str | None = None
    suspended: bool | None = None
    labels: MetadataPatch = None
    annotations: MetadataPatch = None


class Organizations(UseCase):
    async def create(
        self,
        caller: Caller,
        name: str,
        *,
        suspended: bool = False,
        labels: MetadataPatch = None,
        annotations: MetadataPatch = None,
    ) -> Organization:
        if not caller.admin:
            raise forbid()
        check_name(name, what="Organization")
        now = self.clock.now()
        org = Organization(
            guid=new_guid(),
            name=name,
            suspended=suspended,
            created_at=now,
            updated_at=now,
            metadata=patch_metadata(Metadata(), labels, annotations),
        )
        async with self.store.write() as tx:
            await tx.orgs.add(org)
            await record(
                tx,
                self.clock,
                caller,
                "audit.organization.create",
                target=(org.guid, "organization", org.name),
                org_guid=org.guid,
                request={"name": name, "suspended": suspended},
            )
        return org

    async def get(self, caller: Caller, guid: str) -> Organization:
        async with self.store.read() as tx:
            return await visible_org(tx, caller, guid)

    async def get_many(self, caller: Caller, guids: list[str]) -> list[Organization]:
        """For `include=organization`: only what the caller may see."""
        allowed = caller.permissions.visible_org_guids()
        wanted = sorted(set(guids) if allowed is None else set(guids) & allowed)
        async with self.store.read() as tx:
            return await tx.orgs.list_all({"guids": wanted})

    async def page(self, caller: Caller, query: ListQuery) -> Page[Organization]:
        filters = restrict(query.filters, "guids", caller.permissions.visible_org_guids())
        async with self.store.read() as tx:
            return await tx.orgs.page(dataclasses.replace(query, filters=filters))

    async def update(self, caller: Caller, guid: str, changes: OrgChanges) -> Organization:
        if changes.name is not None:
            check_name(changes.name, what="Organization")
        async with self.store.write() as tx:
            org = await visible_org(tx, caller, guid)
            if not caller.permissions.can_manage_org(org.guid):
                raise forbid()
            if changes.suspended is not None and not caller.admin:
                raise forbid()

            def apply(current: Organization) -> Organization:
                return dataclasses.replace(
                    current,
                    name=current.name if changes.name is None else changes.name,
                    suspended=(
                        current.suspended if changes.suspended is None else changes.suspended
                    ),
                    metadata=patch_metadata(current.metadata, changes.labels, changes.annotations),
                )

            _, after = await tx.orgs.update(guid, apply)
            await record(
                tx,
                self.clock,
                caller,
                "audit.organization.update",
                target=(after.guid, "organization", after.name),
                org_guid=after.guid,
                request=changes_request(changes),
            )
        return after

    async def delete(self, caller: Caller, guid: str) -> Job:
        async with self.store.write() as tx:
            org = await visible_org(tx, caller, guid)
            if not caller.admin:
                raise forbid()
            job = await self.engine.submit_in(
                tx,
                "organization.delete",
                target_type="organization",
                target_guid=org.guid,
                creator=self.creator(caller),
            )
            await record(
                tx,
                self.clock,
                caller,
                "audit.organization.delete-request",
                target=(org.guid, "organization", org.name),
                org_guid=org.guid,
            )
        self.engine.wake()
        return job

    async def domains(self, caller: Caller, guid: str, query: ListQuery) -> Page[Domain]:
        async with self.store.read() as tx:
            org = await visible_org(tx, caller, guid)
            filters = {**query.filters, "usable_by_organization_guids": [org.guid]}
            return await tx.domains.page(dataclasses.replace(query, filters=filters))

    async def default_domain(self, caller: Caller, guid: str) -> Domain:
        async with self.store.read() as tx:
            org = await visible_org(tx, caller, guid)
            page = await tx.domains.page(
                ListQuery(filters={"usable_by_organization_guids": [org.guid]}, per_page=50)
            )
        for domain in page.items:
            if not domain.internal and domain.org_guid is None:
                return domain
        for domain in page.items:
            if not domain.internal:
                return domain
        raise NotFound.of("Domain")
