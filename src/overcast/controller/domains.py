"""Domains: shared ones (every org may route under them) and private ones (one org's).

Admins create shared domains; an org's managers create private domains for it. A name is
taken once across the platform, and the rules keep one org from claiming another's traffic:
a domain may not sit under (or on) another org's private domain, may not be the API's own host,
and may not be a name an existing route already answers to. Deleting a domain deletes its
routes (as CF does), through a `domain.delete` job that the routes use case runs, since it
tells the routing tier what changed."""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

from overcast.controller.access import Caller, forbid
from overcast.controller.base import MetadataPatch, UseCase
from overcast.controller.events import record
from overcast.core.ids import new_guid
from overcast.models.errors import NotFound, Uniqueness, Unprocessable
from overcast.models.jobs import Job
from overcast.models.metadata import patch_metadata
from overcast.models.query import ListQuery, Page
from overcast.models.resources import Domain, Metadata
from overcast.store.base import Tx

DOMAIN_DELETE = "domain.delete"
MAX_DOMAIN_LENGTH = 253
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_domain_name(name: str) -> str:
    """The name in lower case, if it is a valid DNS name of at least two labels (each 1-63
    of a-z, 0-9 and '-', not starting or ending with '-'; 253 characters at most)."""
    lowered = name.lower()
    if not lowered:
        raise Unprocessable("Name can't be blank")
    if len(lowered) > MAX_DOMAIN_LENGTH:
        raise Unprocessable(f"Name is too long (maximum is {MAX_DOMAIN_LENGTH} characters)")
    labels = lowered.split(".")
    if len(labels) < 2:
        raise Unprocessable("Name must contain at least one '.'")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise Unprocessable(
            "Name must be a valid domain name: labels of 1 to 63 letters, digits or '-', "
            "not starting or ending with '-', separated by '.'"
        )
    return lowered


def api_host(api_url: str) -> str | None:
    """The host name of the API's external URL (lower-case), if it is known."""
    if not api_url:
        return None
    return urlsplit(api_url).hostname or None


def _parents(name: str) -> list[str]:
    """The name and every domain above it with at least two labels."""
    labels = name.split(".")
    return [".".join(labels[index:]) for index in range(len(labels) - 1)]


class Domains(UseCase):
    # The API's external URL (set by the controller): its host cannot be a domain.
    api_url: str = ""

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
            return await self._visible(tx, caller, guid)

    @staticmethod
    async def _visible(tx: Tx, caller: Caller, guid: str) -> Domain:
        domain = await tx.domains.get(guid)
        if domain is None or (
            domain.org_guid is not None and not caller.permissions.can_see_org(domain.org_guid)
        ):
            raise NotFound.of("Domain")
        return domain

    async def _writable(self, tx: Tx, caller: Caller, guid: str) -> Domain:
        domain = await self._visible(tx, caller, guid)
        if domain.org_guid is None:
            if not caller.admin:
                raise forbid()
        elif not caller.permissions.can_manage_org(domain.org_guid):
            raise forbid()
        return domain

    # --- changes ----------------------------------------------------------------------------

    async def create(
        self,
        caller: Caller,
        name: str,
        *,
        internal: bool = False,
        org_guid: str | None = None,
        labels: MetadataPatch = None,
        annotations: MetadataPatch = None,
    ) -> Domain:
        lowered = check_domain_name(name)
        if internal and org_guid is not None:
            raise Unprocessable("Cannot associate an internal domain with an organization")
        now = self.clock.now()
        domain = Domain(
            guid=new_guid(),
            name=lowered,
            internal=internal,
            org_guid=org_guid,
            created_at=now,
            updated_at=now,
            metadata=patch_metadata(Metadata(), labels, annotations),
        )
        async with self.store.write() as tx:
            if org_guid is None:
                if not caller.admin:
                    raise forbid()
            else:
                org = await tx.orgs.get(org_guid)
                if org is None or not caller.permissions.can_see_org(org.guid):
                    raise Unprocessable(
                        f"Organization with guid '{org_guid}' does not exist or you do not "
                        "have access to it."
                    )
                if not caller.permissions.can_manage_org(org.guid):
                    raise forbid()
            await self._check_available(tx, lowered, org_guid)
            try:
                await tx.domains.add(domain)
            except Uniqueness:
                raise _taken(lowered) from None
            await record(
                tx,
                self.clock,
                caller,
                "audit.domain.create",
                target=(domain.guid, "domain", domain.name),
                org_guid=org_guid,
                request={"name": lowered, "internal": internal, "organization_guid": org_guid},
            )
        return domain

    async def _check_available(self, tx: Tx, name: str, org_guid: str | None) -> None:
        if await tx.domains.by_name(name) is not None:
            raise _taken(name)
        if name == api_host(self.api_url):
            raise Unprocessable(f'The domain name "{name}" is the API\'s own host name.')
        # A private domain of another org at or above this name owns all of it.
        for parent in await tx.domains.list_all({"names": _parents(name)}):
            if parent.org_guid is not None and parent.org_guid != org_guid:
                raise Unprocessable(
                    f'The domain name "{name}" cannot be created because "{parent.name}" is '
                    "a private domain of another organization."
                )
        # A route already answers to this name (host.domain).
        host, _, rest = name.partition(".")
        above = await tx.domains.by_name(rest)
        if above is not None and await tx.routes.guids(
            {"domain_guids": [above.guid], "hosts": [host]}
        ):
            raise Unprocessable(f'The domain name "{name}" is already in use by a route.')

    async def update(
        self,
        caller: Caller,
        guid: str,
        *,
        labels: MetadataPatch = None,
        annotations: MetadataPatch = None,
    ) -> Domain:
        async with self.store.write() as tx:
            await self._writable(tx, caller, guid)
            _, after = await tx.domains.update(
                guid,
                lambda current: dataclasses.replace(
                    current, metadata=patch_metadata(current.metadata, labels, annotations)
                ),
            )
            await record(
                tx,
                self.clock,
                caller,
                "audit.domain.update",
                target=(after.guid, "domain", after.name),
                org_guid=after.org_guid,
                request={
                    "metadata": {
                        key: value
                        for key, value in (("labels", labels), ("annotations", annotations))
                        if value is not None
                    }
                },
            )
        return after

    async def delete(self, caller: Caller, guid: str) -> Job:
        """Queue the `domain.delete` job: the domain goes, and its routes with it."""
        async with self.store.write() as tx:
            domain = await self._writable(tx, caller, guid)
            job = await self.engine.submit_in(
                tx,
                DOMAIN_DELETE,
                target_type="domain",
                target_guid=domain.guid,
                creator=self.creator(caller),
            )
            await record(
                tx,
                self.clock,
                caller,
                "audit.domain.delete-request",
                target=(domain.guid, "domain", domain.name),
                org_guid=domain.org_guid,
            )
        self.engine.wake()
        return job


def _taken(name: str) -> Uniqueness:
    return Uniqueness(f'The domain name "{name}" is already in use')
