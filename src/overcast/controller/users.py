"""Users (UAA's side of CF lives here too: the password is set through this API)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from overcast.auth.passwords import hash_password
from overcast.controller.access import Caller, forbid
from overcast.controller.base import MetadataPatch, UseCase
from overcast.controller.events import record
from overcast.core.ids import new_guid
from overcast.models.errors import NotFound, Unprocessable
from overcast.models.jobs import Job
from overcast.models.metadata import patch_metadata
from overcast.models.query import ListQuery, Page
from overcast.models.resources import Metadata, User
from overcast.models.validation import check_name
from overcast.store.base import Tx

MIN_PASSWORD_LENGTH = 8


@dataclass(frozen=True)
class UserChanges:
    password: str | None = None
    labels: MetadataPatch = None
    annotations: MetadataPatch = None


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH or len(password) > 1024:
        raise Unprocessable(f"Password must be {MIN_PASSWORD_LENGTH} to 1024 characters")


class Users(UseCase):
    async def create(
        self,
        caller: Caller,
        username: str,
        *,
        password: str | None = None,
        origin: str = "uaa",
        admin: bool = False,
        labels: MetadataPatch = None,
        annotations: MetadataPatch = None,
    ) -> User:
        if not caller.admin:
            raise forbid()
        check_name(username, what="User")
        if password is not None:
            _check_password(password)
        password_hash = await hash_password(password) if password is not None else None
        now = self.clock.now()
        user = User(
            guid=new_guid(),
            username=username,
            origin=origin,
            admin=admin,
            password_hash=password_hash,
            created_at=now,
            updated_at=now,
            metadata=patch_metadata(Metadata(), labels, annotations),
        )
        async with self.store.write() as tx:
            await tx.users.add(user)
            await record(
                tx,
                self.clock,
                caller,
                "audit.user.create",
                target=(user.guid, "user", user.username),
                request={"username": username, "origin": origin, "admin": admin},
            )
        return user

    async def _visible(self, tx: Tx, caller: Caller, guid: str) -> User:
        user = await tx.users.get(guid)
        if user is None:
            raise NotFound.of("User")
        if caller.admin or user.guid == caller.identity.guid:
            return user
        if user.guid in await self._visible_guids(tx, caller):
            return user
        raise NotFound.of("User")

    async def _visible_guids(self, tx: Tx, caller: Caller) -> set[str]:
        """Users holding a role in an org the caller can see, and the caller."""
        orgs = caller.permissions.visible_org_guids() or frozenset()
        roles = await tx.roles.list_all({"scoped_organization_guids": sorted(orgs)})
        return {role.user_guid for role in roles} | {caller.identity.guid}

    async def get(self, caller: Caller, guid: str) -> User:
        async with self.store.read() as tx:
            return await self._visible(tx, caller, guid)

    async def get_many(self, caller: Caller, guids: list[str]) -> list[User]:
        async with self.store.read() as tx:
            users = await tx.users.list_all({"guids": sorted(set(guids))})
            if caller.admin:
                return users
            visible = await self._visible_guids(tx, caller)
        return [user for user in users if user.guid in visible]

    async def page(self, caller: Caller, query: ListQuery) -> Page[User]:
        async with self.store.read() as tx:
            filters = dict(query.filters)
            if not caller.admin:
                visible = await self._visible_guids(tx, caller)
                requested = filters.get("guids")
                filters["guids"] = sorted(
                    visible if requested is None else visible & set(requested)
                )
            return await tx.users.page(dataclasses.replace(query, filters=filters))

    async def update(self, caller: Caller, guid: str, changes: UserChanges) -> User:
        async with self.store.read() as tx:
            await self._visible(tx, caller, guid)
        if not caller.admin:
            raise forbid()
        password_hash = None
        if changes.password is not None:
            _check_password(changes.password)
            password_hash = await hash_password(changes.password)
        async with self.store.write() as tx:
            _, after = await tx.users.update(
                guid,
                lambda current: dataclasses.replace(
                    current,
                    password_hash=password_hash or current.password_hash,
                    metadata=patch_metadata(current.metadata, changes.labels, changes.annotations),
                ),
            )
            request = {"password_changed": changes.password is not None}
            await record(
                tx,
                self.clock,
                caller,
                "audit.user.update",
                target=(after.guid, "user", after.username),
                request=request,
            )
        return after

    async def delete(self, caller: Caller, guid: str) -> Job:
        async with self.store.write() as tx:
            user = await self._visible(tx, caller, guid)
            if not caller.admin:
                raise forbid()
            if user.guid == caller.identity.guid:
                raise Unprocessable("You cannot delete yourself")
            job = await self.engine.submit_in(
                tx,
                "user.delete",
                target_type="user",
                target_guid=user.guid,
                creator=self.creator(caller),
            )
            await record(
                tx,
                self.clock,
                caller,
                "audit.user.delete-request",
                target=(user.guid, "user", user.username),
            )
        self.engine.wake()
        return job
