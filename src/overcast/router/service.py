"""The router service (DESIGN.md sections 4 and 10): the route table fed from the bus, the data
plane in front of it, and the router's own status.

- `router.register` / `router.unregister` change the table (every router hears every
  registration: no queue group); `router.greet` is answered with this router's RouterStart.
- `router.start` is published at start and again after every bus reconnect; cells then
  register everything at once.
- Not ready (the data plane answers 503, /health 503) until a full round of registrations
  was heard: `ready_after_seconds` (default one register interval) after start.
- `cell.lost` (the health service's verdict) withdraws that cell's endpoints at once, rather
  than after their stale threshold: a paused or cut-off cell's instances get no requests.
- Stale endpoints are pruned on a timer, except while the bus is down; a reconnect freshens
  every entry first. A bus outage never empties the table, so routes keep answering.
- Every request is an access log line, and for apps an `RTR` log line on `logs.<app>`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from overcast.bus.base import Bus, BusState, Message, Subscription
from overcast.bus.messages import (
    BadMessage,
    CellLost,
    LogBatch,
    LogLine,
    RouteRegistration,
    RouterStart,
)
from overcast.bus.subjects import (
    CELL_LOST,
    ROUTER_GREET,
    ROUTER_REGISTER,
    ROUTER_START,
    ROUTER_UNREGISTER,
    app_logs,
)
from overcast.core.logging import get_logger
from overcast.core.settings import RouterSection
from overcast.models.secrets import mask_query
from overcast.router.endpoints import AccessRecord, Endpoint, Route
from overcast.router.proxy import ProxyOptions, ProxyServer
from overcast.router.status import status_server
from overcast.router.table import RouteTable, Tag

log = get_logger(__name__)

RTR_SOURCE = "RTR"
# Access records wait here to be written and sent as RTR lines, off the requests' path; beyond
# it they are dropped (logs are lossy, requests are not).
ACCESS_QUEUE_RECORDS = 50_000
ACCESS_DRAIN_SECONDS = 0.05
ACCESS_BATCH = 32
# RTR lines of one app per bus message, at most.
MAX_BATCH_LINES = 500
ACCESS_FLUSH_SECONDS = 0.5


@dataclass(frozen=True)
class RouterPorts:
    http: int
    status: int


_second_cache: dict[int, str] = {}


def _timestamp(moment: float) -> str:
    """ISO 8601 with microseconds; the formatting of the whole second is cached (a request's
    line is formatted thousands of times a second)."""
    second = int(moment)
    text = _second_cache.get(second)
    if text is None:
        if len(_second_cache) > 4:
            _second_cache.clear()
        text = _second_cache[second] = datetime.fromtimestamp(second, UTC).strftime(
            "%Y-%m-%dT%H:%M:%S"
        )
    return f"{text}.{int((moment - second) * 1_000_000):06d}Z"


def access_line(record: AccessRecord) -> str:
    """One request in the gorouter access log format (what `cf logs` shows for RTR)."""
    when = _timestamp(record.started_at)
    endpoint = record.endpoint
    backend = endpoint.address if endpoint else "-"
    parts = [
        f'{record.host} - [{when}] "{record.method} {mask_query(record.target)} HTTP/1.1" '
        f"{record.status}",
        f"{record.bytes_received} {record.bytes_sent}",
        f'"{record.referer or "-"}" "{record.user_agent or "-"}"',
        f'"{record.client}" "{backend}"',
        f'x_forwarded_proto:"http" vcap_request_id:"{record.request_id}"',
        f"response_time:{record.duration_seconds:.6f}",
        f'app_id:"{endpoint.app_guid if endpoint else "-"}"',
        f'app_index:"{endpoint.index if endpoint else "-"}"',
    ]
    if record.error:
        parts.append(f'x_cf_routererror:"{record.error}"')
    return " ".join(parts)


class AccessLog:
    """Access lines appended to a file in batches (never a write per request)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._pending: list[str] = []

    def add(self, line: str) -> None:
        if self.path is not None:
            self._pending.append(line)

    def take(self) -> list[str]:
        lines, self._pending = self._pending, []
        return lines

    def flush(self) -> None:
        self.write(self.take())

    def write(self, lines: list[str]) -> None:
        if not lines or self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
        except OSError as error:
            log.warning("router.access_log_failed", error=str(error))


class RouterService:
    def __init__(
        self,
        settings: RouterSection,
        bus: Bus,
        *,
        access_log: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        proxy_options: ProxyOptions | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.id = settings.id or f"router-{uuid.uuid4()}"
        self.table = RouteTable(settings.prune_threshold_seconds, settings.lost_cell_hold_seconds)
        # Cell id -> when the latest lost verdict about it was made (its `at`).
        self._lost_at: dict[str, float] = {}
        self._clock = clock
        self._wall = wall
        options = proxy_options or ProxyOptions(
            max_connections_per_endpoint=settings.max_connections_per_endpoint,
            ineligible_seconds=settings.ineligible_seconds,
            backend_connect_timeout=settings.backend_connect_timeout_seconds,
            backend_response_timeout=settings.backend_response_timeout_seconds,
        )
        self.proxy = ProxyServer(self._resolve, access=self._on_access, options=options)
        self.status = status_server(self)
        self.access_log = AccessLog(access_log)
        self._pending: collections.deque[AccessRecord] = collections.deque()
        self._subscriptions: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started_at = 0.0
        self.registrations = 0
        self._registered = asyncio.Event()  # set at every registration heard
        self.unregistrations = 0
        self.dropped_log_lines = 0

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> RouterPorts:
        self._started_at = self._clock()
        self.bus.add_state_listener(self._on_bus_state)
        self._subscriptions = [
            await self.bus.subscribe(ROUTER_REGISTER, self._on_register),
            await self.bus.subscribe(ROUTER_UNREGISTER, self._on_unregister),
            await self.bus.subscribe(ROUTER_GREET, self._on_greet),
            await self.bus.subscribe(CELL_LOST, self._on_cell_lost),
        ]
        http = await self.proxy.start(self.settings.host, self.settings.port)
        status = await self.status.start(self.settings.status_host, self.settings.status_port)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._prune_forever(), name="router-prune"),
            loop.create_task(self._ready_after_round(), name="router-ready"),
            loop.create_task(self._drain_access_forever(), name="router-access"),
            loop.create_task(self._flush_access_forever(), name="router-access-log"),
        ]
        await self._announce()
        log.info("router.started", router_id=self.id, port=http, status_port=status)
        return RouterPorts(http=http, status=status)

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        self._subscriptions = []
        await self.proxy.stop()
        await self.status.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.drain_access()
        self.access_log.flush()
        log.info("router.stopped", router_id=self.id)

    @property
    def ready(self) -> bool:
        return self.proxy.ready

    def announcement(self) -> RouterStart:
        return RouterStart(
            id=self.id,
            hosts=[self.settings.host],
            minimum_register_interval_seconds=self.settings.register_interval_seconds,
            prune_threshold_seconds=self.settings.prune_threshold_seconds,
        )

    async def _announce(self) -> None:
        try:
            await self.bus.publish(ROUTER_START, self.announcement().wire())
        except Exception as error:
            log.warning("router.announce_failed", error=type(error).__name__)

    async def ready_once_heard(self, registrations: int, *, within: float) -> None:
        """Ready as soon as `registrations` have been heard (or `within` seconds passed), for
        a router started beside every cell it serves (the micro cloud), whose full round is
        known: no need to wait a whole register interval to be sure it was heard."""
        deadline = self._clock() + within
        while self.registrations < registrations:
            self._registered.clear()
            try:
                await asyncio.wait_for(self._registered.wait(), deadline - self._clock())
            except TimeoutError:
                break
        if not self.proxy.ready:
            self.proxy.ready = True
            log.info("router.ready", routes=len(self.table.uris()))

    async def _ready_after_round(self) -> None:
        wait = self.settings.ready_after_seconds
        if wait is None:
            wait = self.settings.register_interval_seconds
        await asyncio.sleep(wait)
        if not self.proxy.ready:
            self.proxy.ready = True
            log.info("router.ready", routes=len(self.table.uris()))

    # --- the bus ----------------------------------------------------------------------------

    async def _on_register(self, message: Message) -> None:
        registration = self._parse(message)
        if registration is None:
            return
        now = self._clock()
        for uri in registration.uris:
            if self.table.register(
                uri,
                _endpoint(registration),
                Tag(registration.tag.guid, registration.tag.index),
                now,
                stale_threshold=registration.stale_threshold_seconds,
                load_balancing=registration.load_balancing.get(uri),
            ):
                self.registrations += 1
                self._registered.set()

    async def _on_unregister(self, message: Message) -> None:
        registration = self._parse(message)
        if registration is None:
            return
        now = self._clock()
        address = f"{registration.host}:{registration.port}"
        tag = Tag(registration.tag.guid, registration.tag.index)
        for uri in registration.uris:
            if self.table.unregister(uri, address, tag, now):
                self.unregistrations += 1

    async def _on_cell_lost(self, message: Message) -> None:
        try:
            verdict = CellLost.parse(message.data)
        except BadMessage as error:
            log.info("router.bad_cell_lost", error=str(error)[:200])
            return
        if verdict.back:
            # Not before the verdict it answers (a late message must not undo a newer one).
            if verdict.at >= self._lost_at.get(verdict.cell_id, 0.0):
                lifted = self.table.readmit_cell(verdict.cell_id)
                log.info("router.cell_readmitted", cell_id=verdict.cell_id, endpoints=lifted)
            return
        self._lost_at[verdict.cell_id] = max(verdict.at, self._lost_at.get(verdict.cell_id, 0.0))
        removed = self.table.withdraw_cell(verdict.cell_id, self._clock())
        self.unregistrations += len(removed)
        log.warning("router.cell_withdrawn", cell_id=verdict.cell_id, endpoints=len(removed))

    async def _on_greet(self, message: Message) -> None:
        await self.bus.respond(message, self.announcement().wire())

    def _on_bus_state(self, state: BusState) -> None:
        if state == BusState.DISCONNECTED:
            self.table.suspend_pruning()
            log.warning("router.bus_down_pruning_suspended")
        elif state in (BusState.CONNECTED, BusState.RECONNECTED):
            if self.table.pruning_suspended:
                self.table.resume_pruning(self._clock())
                log.info("router.bus_back_pruning_resumed")
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(self._announce())

    @staticmethod
    def _parse(message: Message) -> RouteRegistration | None:
        try:
            return RouteRegistration.parse(message.data)
        except BadMessage as error:
            log.info("router.bad_registration", error=str(error)[:200])
            return None

    async def _prune_forever(self) -> None:
        interval = min(self.settings.register_interval_seconds, 10.0)
        while True:
            await asyncio.sleep(interval)
            removed = self.table.prune(self._clock())
            if removed:
                log.info("router.pruned", endpoints=len(removed))

    # --- the data plane's callbacks ---------------------------------------------------------

    def _resolve(self, host: str, path: str) -> Route | None:
        return self.table.lookup(host, path)

    def _on_access(self, record: AccessRecord) -> None:
        # On the request's path: only queued; formatting and publishing happen in batches.
        if self.access_log.path is None and not self.settings.app_access_logs:
            return
        if len(self._pending) < ACCESS_QUEUE_RECORDS:
            self._pending.append(record)
        else:
            self.dropped_log_lines += 1

    async def _drain_access_forever(self) -> None:
        while True:
            await asyncio.sleep(ACCESS_DRAIN_SECONDS)
            await self.drain_access()

    async def drain_access(self) -> None:
        """Write the queued records to the access log and send the apps' RTR lines, one
        LogBatch per app per round."""
        pending = self._pending
        batches: dict[str, list[dict[str, Any]]] = {}
        done = 0
        while pending:
            done += 1
            if done % ACCESS_BATCH == 0:
                await asyncio.sleep(0)  # let requests through between batches
            record = pending.popleft()
            line = access_line(record)
            self.access_log.add(line)
            endpoint = record.endpoint
            if endpoint is None or not endpoint.app_guid or not self.settings.app_access_logs:
                continue
            batch = batches.get(endpoint.app_guid)
            if batch is None:
                batch = batches[endpoint.app_guid] = []
            batch.append(
                LogLine.payload(
                    endpoint.app_guid,
                    RTR_SOURCE,
                    line,
                    int(record.started_at * 1e9),
                    instance_guid=endpoint.instance_guid or None,
                )
            )
            if len(batch) >= MAX_BATCH_LINES:
                await self._publish_lines(endpoint.app_guid, batches.pop(endpoint.app_guid))
        for app_guid, lines in batches.items():
            await self._publish_lines(app_guid, lines)

    async def _publish_lines(self, app_guid: str, lines: list[dict[str, Any]]) -> None:
        try:
            await self.bus.publish(app_logs(app_guid), LogBatch.payload(lines))
        except Exception:
            self.dropped_log_lines += len(lines)

    async def _flush_access_forever(self) -> None:
        while True:
            await asyncio.sleep(ACCESS_FLUSH_SECONDS)
            lines = self.access_log.take()  # on the loop, where lines are added
            if lines:
                await asyncio.to_thread(self.access_log.write, lines)


def _endpoint(registration: RouteRegistration) -> Endpoint:
    return Endpoint(
        host=registration.host,
        port=registration.port,
        app_guid=registration.app_guid,
        process_guid=registration.process_guid,
        instance_guid=registration.instance_guid,
        index=registration.index,
        cell_id=registration.cell_id,
    )
