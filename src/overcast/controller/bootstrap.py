"""First-start set-up: the admin user and the default shared domain."""

from __future__ import annotations

from dataclasses import dataclass

from overcast.auth.passwords import generate_password, hash_password
from overcast.core.clock import Clock
from overcast.core.ids import new_guid
from overcast.core.logging import get_logger
from overcast.models.resources import Domain, User
from overcast.store.base import Store

log = get_logger(__name__)


@dataclass(frozen=True)
class AdminBootstrap:
    username: str
    # Set only when this call created the admin with a generated password (to be saved).
    generated_password: str | None
    created: bool


async def ensure_admin(store: Store, clock: Clock, username: str, password: str) -> AdminBootstrap:
    async with store.read() as tx:
        if await tx.users.by_username(username) is not None:
            return AdminBootstrap(username=username, generated_password=None, created=False)
    chosen = password or generate_password()
    now = clock.now()
    user = User(
        guid=new_guid(),
        username=username,
        admin=True,
        created_at=now,
        updated_at=now,
        password_hash=await hash_password(chosen),
    )
    async with store.write() as tx:
        if await tx.users.by_username(username) is not None:  # another controller won the race
            return AdminBootstrap(username=username, generated_password=None, created=False)
        await tx.users.add(user)
    log.info("bootstrap.admin_created", username=username)
    return AdminBootstrap(
        username=username, generated_password=None if password else chosen, created=True
    )


async def ensure_shared_domain(store: Store, clock: Clock, name: str) -> Domain:
    async with store.write() as tx:
        existing = await tx.domains.by_name(name)
        if existing is not None:
            return existing
        now = clock.now()
        domain = Domain(guid=new_guid(), name=name, created_at=now, updated_at=now)
        await tx.domains.add(domain)
    log.info("bootstrap.shared_domain_created", domain=name)
    return domain
