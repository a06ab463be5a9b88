"""OAuth clients for automation (the client_credentials grant). Admin only."""

from __future__ import annotations

import re

from overcast.auth.identity import ADMIN_SCOPE, USER_SCOPES
from overcast.auth.passwords import hash_password
from overcast.controller.access import Caller, forbid
from overcast.controller.base import UseCase
from overcast.controller.events import record
from overcast.models.errors import NotFound, Unprocessable
from overcast.models.resources import OAuthClient

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._\-]{1,255}$")
GRANTABLE_SCOPES = frozenset({*USER_SCOPES, ADMIN_SCOPE, "cloud_controller.admin_read_only"})
RESERVED_CLIENT_IDS = frozenset({"cf"})


class Clients(UseCase):
    async def create(
        self, caller: Caller, client_id: str, secret: str, authorities: list[str]
    ) -> OAuthClient:
        if not caller.admin:
            raise forbid()
        if not _CLIENT_ID.match(client_id) or client_id in RESERVED_CLIENT_IDS:
            raise Unprocessable("Client id must be 1-255 of A-Z a-z 0-9 . _ - and not 'cf'")
        if len(secret) < 16:
            raise Unprocessable("Client secret must be at least 16 characters")
        unknown = sorted(set(authorities) - GRANTABLE_SCOPES)
        if unknown:
            raise Unprocessable(f"Unknown authorities: {', '.join(unknown)}")
        client = OAuthClient(
            client_id=client_id,
            created_at=self.clock.now(),
            secret_hash=await hash_password(secret),
            authorized_grant_types=("client_credentials",),
            authorities=tuple(dict.fromkeys(authorities)),
        )
        async with self.store.write() as tx:
            await tx.clients.add(client)
            await record(
                tx,
                self.clock,
                caller,
                "audit.client.create",
                target=(client_id, "client", client_id),
                request={"client_id": client_id, "authorities": authorities},
            )
        return client

    async def all(self, caller: Caller) -> list[OAuthClient]:
        if not caller.admin:
            raise forbid()
        async with self.store.read() as tx:
            return await tx.clients.all()

    async def delete(self, caller: Caller, client_id: str) -> None:
        if not caller.admin:
            raise forbid()
        async with self.store.write() as tx:
            if await tx.clients.delete(client_id) is None:
                raise NotFound.of("Client")
            await record(
                tx,
                self.clock,
                caller,
                "audit.client.delete",
                target=(client_id, "client", client_id),
            )
