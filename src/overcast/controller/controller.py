"""The controller: every use case, wired over one store, clock and job engine."""

from __future__ import annotations

from overcast.auth.identity import Identity
from overcast.auth.service import AuthService
from overcast.bus.base import Bus
from overcast.controller.access import Caller, load_caller
from overcast.controller.apps import Apps
from overcast.controller.audit import AuditEvents
from overcast.controller.clients import Clients
from overcast.controller.deletion import Deletions
from overcast.controller.domains import Domains
from overcast.controller.jobs import Jobs
from overcast.controller.orgs import Organizations
from overcast.controller.processes import Processes
from overcast.controller.roles import Roles
from overcast.controller.spaces import Spaces
from overcast.controller.users import Users
from overcast.core.clock import Clock
from overcast.jobs.engine import JobEngine
from overcast.store.base import Store


class Controller:
    def __init__(
        self, store: Store, clock: Clock, engine: JobEngine, auth: AuthService, bus: Bus
    ) -> None:
        self.store = store
        self.bus = bus
        self.clock = clock
        self.engine = engine
        self.auth = auth
        parts = (store, clock, engine)
        self.orgs = Organizations(*parts)
        self.spaces = Spaces(*parts)
        self.apps = Apps(*parts)
        self.processes = Processes(*parts)
        self.roles = Roles(*parts)
        self.users = Users(*parts)
        self.domains = Domains(*parts)
        self.audit_events = AuditEvents(*parts)
        self.jobs = Jobs(*parts)
        self.clients = Clients(*parts)
        for operation in Deletions(store).operations():
            engine.register(operation)

    def set_api_url(self, url: str) -> None:
        self.apps.api_url = url

    async def caller(self, authorization: str | None) -> Caller:
        """Authenticate a bearer token and load what its holder may do."""
        identity: Identity = await self.auth.authenticate(authorization)
        return await load_caller(self.store, identity)
