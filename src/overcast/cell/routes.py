"""Route registration (DESIGN.md section 4): a cell tells the routers where its instances are.

- An instance's routes are registered on `router.register` once it is RUNNING (never while it
  starts), and again every register interval, which the routers announce on `router.start`
  (and in answer to `router.greet`, asked when the cell starts).
- A router that starts publishes `router.start`: every route is registered again at once.
- Leaving RUNNING (stop, crash, loss) unregisters first; the agent stops the process after.
- Each message carries the modification tag (instance guid, the instance's seq in the cell
  table), so a router never lets an older message overwrite a newer one.

Nothing here stops or changes an instance: a bus that is down only delays registrations."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from overcast.bus.base import Bus, BusError, Message, Subscription
from overcast.bus.messages import (
    BadMessage,
    ModificationTag,
    RouteRegistration,
    RouterGreet,
    RouterStart,
)
from overcast.bus.subjects import ROUTER_GREET, ROUTER_REGISTER, ROUTER_START, ROUTER_UNREGISTER
from overcast.cell.table import InstanceRecord
from overcast.core.logging import get_logger
from overcast.models.instances import InstanceState

log = get_logger(__name__)

DEFAULT_REGISTER_INTERVAL_SECONDS = 5.0
GREET_TIMEOUT_SECONDS = 1.0
# Registrations ask the routers to forget an endpoint after this many missed rounds.
STALE_ROUNDS = 6


def registration(
    record: InstanceRecord, host: str, interval: float, cell_id: str = ""
) -> RouteRegistration | None:
    """What announces the instance's routes; None when it has none or no port."""
    spec = record.spec
    if not spec.routes or record.port is None:
        return None
    return RouteRegistration(
        uris=list(spec.routes),
        host=host,
        port=record.port,
        app_guid=spec.app_guid,
        process_guid=spec.process_guid,
        instance_guid=spec.instance_guid,
        index=spec.index,
        tag=ModificationTag(guid=spec.instance_guid, index=record.seq),
        cell_id=cell_id,
        stale_threshold_seconds=interval * STALE_ROUNDS,
        load_balancing={
            uri: mode for uri, mode in spec.route_options.items() if uri in spec.routes
        },
    )


class RouteRegistrar:
    def __init__(
        self,
        bus: Bus,
        *,
        host: str,
        cell_id: str,
        records: Callable[[], Iterable[InstanceRecord]],
    ) -> None:
        self._bus = bus
        self._host = host
        self._cell_id = cell_id
        self._records = records
        self.interval = DEFAULT_REGISTER_INTERVAL_SECONDS
        # A router has told us its interval (greet answered, or router.start heard). Until
        # then every round greets again: a lost greeting must not leave the cell on the
        # default interval for good (routers announce only when they start).
        self._heard_router = False
        self._subscription: Subscription | None = None
        self._loop: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self._subscription = await self._bus.subscribe(ROUTER_START, self._on_router_start)
        self._loop = asyncio.get_running_loop().create_task(
            self._register_forever(), name=f"cell-routes:{self._cell_id}"
        )
        await self._greet()

    async def stop(self) -> None:
        if self._subscription is not None:
            try:
                await self._subscription.unsubscribe()
            except Exception:
                log.debug("cell.routes_unsubscribe_failed")
            self._subscription = None
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None

    # --- one instance -----------------------------------------------------------------------

    def _registration(self, record: InstanceRecord) -> RouteRegistration | None:
        return registration(record, self._host, self.interval, self._cell_id)

    async def register(self, record: InstanceRecord) -> None:
        message = self._registration(record)
        if message is not None:
            await self._publish(ROUTER_REGISTER, message)

    async def unregister(self, record: InstanceRecord, uris: list[str] | None = None) -> None:
        """Withdraw the instance's routes (or only `uris`), tagged with its current seq."""
        message = self._registration(record)
        if message is None:
            return
        if uris is not None:
            message = message.model_copy(update={"uris": uris})
        await self._publish(ROUTER_UNREGISTER, message)

    # --- rounds -----------------------------------------------------------------------------

    async def register_all(self) -> int:
        count = 0
        for record in list(self._records()):
            if record.state == InstanceState.RUNNING:
                message = self._registration(record)
                if message is not None:
                    await self._publish(ROUTER_REGISTER, message)
                    count += 1
        return count

    async def _register_forever(self) -> None:
        while True:
            try:
                await self.register_all()
            except Exception:  # a round that failed must not end the rounds
                log.exception("cell.route_round_failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            if not self._heard_router:
                await self._greet()

    def _adopt(self, announced: RouterStart) -> None:
        self._heard_router = True
        # Several routers: the most demanding interval serves them all.
        wanted = announced.minimum_register_interval_seconds
        if wanted < self.interval or self.interval == DEFAULT_REGISTER_INTERVAL_SECONDS:
            self.interval = wanted
        self._wake.set()  # a round now, and the next wait at the new interval

    async def _on_router_start(self, message: Message) -> None:
        try:
            announced = RouterStart.parse(message.data)
        except BadMessage:
            return
        self._adopt(announced)  # and a full round at once
        log.info("cell.router_started", router=announced.id, interval=self.interval)

    async def _greet(self) -> None:
        try:
            reply = await self._bus.request(
                ROUTER_GREET,
                RouterGreet(requester=self._cell_id).wire(),
                timeout=GREET_TIMEOUT_SECONDS,
            )
            self._adopt(RouterStart.parse(reply.data))
        except (BusError, BadMessage):
            pass  # no router yet: its router.start will say when to register

    async def _publish(self, subject: str, message: RouteRegistration) -> None:
        try:
            await self._bus.publish(subject, message.wire())
        except Exception as error:
            log.warning("cell.route_publish_failed", subject=subject, error=type(error).__name__)
