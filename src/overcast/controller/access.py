"""Who the caller is and what they may see: the checks every use case starts with.

An object the caller cannot see is reported as not found (404), never as forbidden, so its
existence does not leak; an object they can see but not change gives 403."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from overcast.auth.identity import Identity
from overcast.models.errors import NotAuthorized, NotFound
from overcast.models.query import ListQuery, Page
from overcast.models.resources import Actor, App, Organization, Process, Space
from overcast.models.roles import Grant, Permissions
from overcast.store.base import Store, Tx


@dataclass(frozen=True)
class Caller:
    identity: Identity
    permissions: Permissions

    @property
    def actor(self) -> Actor:
        return Actor(guid=self.identity.guid, type=self.identity.kind, name=self.identity.name)

    @property
    def admin(self) -> bool:
        return self.permissions.admin


async def load_caller(store: Store, identity: Identity) -> Caller:
    if identity.admin:
        return Caller(identity, Permissions.of((), admin=True))
    async with store.read() as tx:
        roles = await tx.roles.of_user(identity.guid) if identity.kind == "user" else []
        space_guids = [role.space_guid for role in roles if role.space_guid]
        space_orgs = {}
        if space_guids:
            spaces = await tx.spaces.list_all({"guids": space_guids})
            space_orgs = {space.guid: space.org_guid for space in spaces}
    grants = [
        Grant(
            type=role.type,
            org_guid=role.org_guid,
            space_guid=role.space_guid,
            space_org_guid=space_orgs.get(role.space_guid or ""),
        )
        for role in roles
    ]
    return Caller(identity, Permissions.of(grants))


def forbid() -> NotAuthorized:
    return NotAuthorized("You are not authorized to perform the requested action")


async def visible_org(tx: Tx, caller: Caller, guid: str) -> Organization:
    org = await tx.orgs.get(guid)
    if org is None or not caller.permissions.can_see_org(org.guid):
        raise NotFound.of("Organization")
    return org


async def visible_space(tx: Tx, caller: Caller, guid: str) -> Space:
    space = await tx.spaces.get(guid)
    if space is None or not caller.permissions.can_see_space(space.guid, space.org_guid):
        raise NotFound.of("Space")
    return space


async def visible_app(tx: Tx, caller: Caller, guid: str) -> tuple[App, Space]:
    app = await tx.apps.get(guid)
    if app is None:
        raise NotFound.of("App")
    space = await tx.spaces.require(app.space_guid)
    if not caller.permissions.can_see_space(space.guid, space.org_guid):
        raise NotFound.of("App")
    return app, space


class OfApp(Protocol):
    @property
    def app_guid(self) -> str: ...


ItemT = TypeVar("ItemT", bound=OfApp)
PageT = TypeVar("PageT")


async def visible_of_app(
    tx: Tx, caller: Caller, item: ItemT | None, what: str
) -> tuple[ItemT, App, Space]:
    """Something that belongs to an app (process, droplet, package) is visible with its app;
    a hidden one is as unknown as a missing one (404 naming `what`)."""
    if item is None:
        raise NotFound.of(what)
    try:
        app, space = await visible_app(tx, caller, item.app_guid)
    except NotFound:
        raise NotFound.of(what) from None
    return item, app, space


async def writable_of_app(
    tx: Tx, caller: Caller, item: ItemT | None, what: str
) -> tuple[ItemT, App, Space]:
    """As visible_of_app, and the caller may develop in the app's space (else 403)."""
    found, app, space = await visible_of_app(tx, caller, item, what)
    if not caller.permissions.can_develop_in_space(space.guid):
        raise forbid()
    return found, app, space


async def visible_process(tx: Tx, caller: Caller, guid: str) -> tuple[Process, App, Space]:
    return await visible_of_app(tx, caller, await tx.processes.get(guid), "Process")


async def visible_space_guids(tx: Tx, caller: Caller) -> frozenset[str] | None:
    """Every space the caller can see (None: all). Org managers see all spaces of their orgs."""
    permissions = caller.permissions
    explicit = permissions.visible_space_guids()
    if explicit is None:
        return None
    managed = permissions.visible_space_org_guids()
    through_orgs = await tx.spaces.guids({"organization_guids": sorted(managed)}) if managed else []
    return explicit | frozenset(through_orgs)


def restrict(
    filters: Mapping[str, Sequence[str]], name: str, allowed: frozenset[str] | None
) -> dict[str, Sequence[str]]:
    """Narrow a filter to what the caller may see (None: no restriction)."""
    if allowed is None:
        return dict(filters)
    requested = filters.get(name)
    values = sorted(allowed if requested is None else allowed & set(requested))
    return {**filters, name: values}


class Pageable(Protocol[PageT]):
    async def page(self, query: ListQuery) -> Page[PageT]: ...


async def page_visible(
    tx: Tx, caller: Caller, repo: Pageable[PageT], query: ListQuery
) -> Page[PageT]:
    """A page of what belongs to apps (filterable by space_guids), narrowed to the spaces the
    caller can see."""
    allowed = await visible_space_guids(tx, caller)
    filters = restrict(query.filters, "space_guids", allowed)
    return await repo.page(dataclasses.replace(query, filters=filters))


async def page_of_app(
    tx: Tx, caller: Caller, app_guid: str, repo: Pageable[PageT], query: ListQuery
) -> Page[PageT]:
    """A page of what belongs to one app the caller can see (404 when it cannot)."""
    app, _ = await visible_app(tx, caller, app_guid)
    filters = {**query.filters, "app_guids": [app.guid]}
    return await repo.page(dataclasses.replace(query, filters=filters))
