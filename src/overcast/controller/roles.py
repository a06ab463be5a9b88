"""Roles: who may do what in which org or space."""

from __future__ import annotations

import dataclasses

from overcast.controller.access import Caller, forbid, visible_org, visible_space
from overcast.controller.base import UseCase
from overcast.controller.events import record
from overcast.core.ids import new_guid
from overcast.models.errors import NotFound, Unprocessable
from overcast.models.jobs import Job
from overcast.models.query import ListQuery, Page
from overcast.models.resources import Role, User
from overcast.models.roles import RoleType
from overcast.store.base import Tx

ORG_MEMBER_ROLES = frozenset(
    {
        RoleType.ORGANIZATION_USER,
        RoleType.ORGANIZATION_AUDITOR,
        RoleType.ORGANIZATION_MANAGER,
        RoleType.ORGANIZATION_BILLING_MANAGER,
    }
)


class Roles(UseCase):
    async def _user(
        self, tx: Tx, user_guid: str | None, username: str | None, origin: str | None
    ) -> User:
        if user_guid:
            user = await tx.users.get(user_guid)
        elif username:
            user = await tx.users.by_username(username, origin or "uaa")
        else:
            raise Unprocessable("Role needs a user: relationships.user.data.guid or username")
        if user is None:
            raise Unprocessable(
                "Invalid user. Ensure that the user exists and you have access to it."
            )
        return user

    async def create(
        self,
        caller: Caller,
        role_type: str,
        *,
        user_guid: str | None = None,
        username: str | None = None,
        origin: str | None = None,
        org_guid: str | None = None,
        space_guid: str | None = None,
    ) -> Role:
        try:
            kind = RoleType(role_type)
        except ValueError:
            allowed = ", ".join(sorted(t.value for t in RoleType))
            raise Unprocessable(f"Type must be one of the allowed types: {allowed}") from None
        if kind.is_org_role != bool(org_guid) or bool(org_guid) == bool(space_guid):
            where = "an organization" if kind.is_org_role else "a space"
            raise Unprocessable(f"Role type {kind.value} must be given {where} relationship only")
        now = self.clock.now()
        async with self.store.write() as tx:
            user = await self._user(tx, user_guid, username, origin)
            if org_guid:
                org = await visible_org(tx, caller, org_guid)
                if not caller.permissions.can_manage_org(org.guid):
                    raise forbid()
                role = Role(
                    guid=new_guid(),
                    type=kind,
                    user_guid=user.guid,
                    org_guid=org.guid,
                    created_at=now,
                    updated_at=now,
                )
                scope_space, scope_org = None, org.guid
            else:
                assert space_guid is not None
                space = await visible_space(tx, caller, space_guid)
                if not caller.permissions.can_manage_space(space.guid, space.org_guid):
                    raise forbid()
                member = await tx.roles.page(
                    ListQuery(
                        filters={"user_guids": [user.guid], "organization_guids": [space.org_guid]}
                    )
                )
                if member.total == 0:
                    raise Unprocessable(
                        "Users cannot be assigned roles in a space if they do not have a role "
                        "in that space's organization."
                    )
                role = Role(
                    guid=new_guid(),
                    type=kind,
                    user_guid=user.guid,
                    space_guid=space.guid,
                    created_at=now,
                    updated_at=now,
                )
                scope_space, scope_org = space.guid, space.org_guid
            await tx.roles.add(role)
            await record(
                tx,
                self.clock,
                caller,
                f"audit.user.{kind.value}_add",
                target=(user.guid, "user", user.username),
                space_guid=scope_space,
                org_guid=scope_org,
                request={"type": kind.value},
            )
        return role

    async def _visible(self, tx: Tx, caller: Caller, guid: str) -> Role:
        role = await tx.roles.get(guid)
        if role is None:
            raise NotFound.of("Role")
        if caller.admin or role.user_guid == caller.identity.guid:
            return role
        try:
            if role.org_guid:
                await visible_org(tx, caller, role.org_guid)
            elif role.space_guid:
                await visible_space(tx, caller, role.space_guid)
        except NotFound:
            raise NotFound.of("Role") from None
        return role

    async def get(self, caller: Caller, guid: str) -> Role:
        async with self.store.read() as tx:
            return await self._visible(tx, caller, guid)

    async def page(self, caller: Caller, query: ListQuery) -> Page[Role]:
        visible_orgs = caller.permissions.visible_org_guids()
        filters = dict(query.filters)
        if visible_orgs is not None:
            filters["scoped_organization_guids"] = sorted(visible_orgs)
        async with self.store.read() as tx:
            return await tx.roles.page(dataclasses.replace(query, filters=filters))

    async def delete(self, caller: Caller, guid: str) -> Job:
        async with self.store.write() as tx:
            role = await self._visible(tx, caller, guid)
            if role.org_guid:
                allowed = caller.permissions.can_manage_org(role.org_guid)
            else:
                space = await tx.spaces.require(role.space_guid or "")
                allowed = caller.permissions.can_manage_space(space.guid, space.org_guid)
            if not allowed:
                raise forbid()
            job = await self.engine.submit_in(
                tx,
                "role.delete",
                target_type="role",
                target_guid=role.guid,
                creator=self.creator(caller),
            )
            user = await tx.users.require(role.user_guid)
            space_guid = role.space_guid
            org_guid = role.org_guid or (await tx.spaces.require(role.space_guid or "")).org_guid
            await record(
                tx,
                self.clock,
                caller,
                f"audit.user.{role.type.value}_remove",
                target=(user.guid, "user", user.username),
                space_guid=space_guid,
                org_guid=org_guid,
                request={"type": role.type.value},
            )
        self.engine.wake()
        return job
