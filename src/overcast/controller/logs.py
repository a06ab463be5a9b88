"""Application logs: every controller's buffer of recent lines, and live readers.

Every controller subscribes to `logs.*` on its own (not in a queue group), so each holds the
full picture and any of them can answer `GET /v3/x/apps/:guid/logs`. Payloads are validated
with `LogLine.parse`; anything malformed is dropped (and counted), never raised.

Bounds: `lines_per_app` recent lines per app, `max_apps` apps (the app that logged least
recently is forgotten first), and per live reader a queue of `listener_queue_lines`. A reader
that falls behind loses lines instead of slowing the bus down; when it catches up it first
reads one `LGR` line saying how many it lost (Cloud Foundry's loggregator says so the same way).

The controller's own lines (`API`: "Updated app with guid ...") go out on the bus with
`publish`, and come back into every controller's buffer through the subscription.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict, deque
from datetime import UTC, datetime
from typing import Any, Literal, Self

from overcast.bus.base import Bus, BusError, Message, Subscription
from overcast.bus.messages import BadMessage, parse_log_message
from overcast.bus.messages import LogLine as LogLine  # re-exported for the API layer
from overcast.bus.subjects import ALL_APP_LOGS, app_logs
from overcast.controller.access import Caller, forbid, visible_app
from overcast.core.clock import Clock
from overcast.core.logging import get_logger
from overcast.models.resources import Space
from overcast.models.roles import RoleType
from overcast.store.base import Store

log = get_logger(__name__)

DEFAULT_LINES_PER_APP = 1000
DEFAULT_MAX_APPS = 10_000
DEFAULT_LISTENER_QUEUE = 1000
# Longer lines are cut (a line is one bus message; this keeps the buffer's size bounded).
MAX_LINE_CHARS = 64 * 1024
TRUNCATED = " [truncated]"
# The source of lines the log system itself writes (Cloud Foundry's loggregator: "LGR").
SOURCE_LOG_SYSTEM = "LGR"
SOURCE_API = "API"
# Who may read an app's logs besides admins and the managers of its org.
LOG_READER_SPACE_ROLES = frozenset(
    {RoleType.SPACE_DEVELOPER, RoleType.SPACE_MANAGER, RoleType.SPACE_AUDITOR}
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def unix_nanos(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _subject_of(app_guid: str) -> str | None:
    try:
        return app_logs(app_guid)
    except ValueError:
        return None


def change_summary(changes: dict[str, Any]) -> str:
    """`{"state": "STARTED"}`: the JSON of a change, for `API` lines."""
    return json.dumps(changes, sort_keys=True, default=str)


class StreamEnded(Exception):
    """The log buffer stopped (the server is shutting down): the reader should finish."""


class LogListener:
    """One live reader of one app's lines. Use as a context manager; `get()` waits for the
    next line."""

    def __init__(self, buffer: LogBuffer, app_guid: str, bound: int) -> None:
        self.app_guid = app_guid
        self._buffer = buffer
        self._bound = bound
        # Unbounded underneath: the bound is enforced in offer(), which keeps room for the
        # dropped-lines notice and the end marker.
        self._queue: asyncio.Queue[LogLine | None] = asyncio.Queue()
        self.dropped = 0
        self._ended = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._buffer._forget(self)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def preload(self, lines: list[LogLine]) -> None:
        for line in lines:
            self._queue.put_nowait(line)

    def offer(self, line: LogLine) -> None:
        """Never blocks: a reader that is `bound` lines behind loses the line."""
        if self._ended:
            return
        if self.dropped:
            # Room for the notice and the line, or this line is lost too.
            if self._queue.qsize() + 2 > self._bound:
                self.dropped += 1
                return
            self._queue.put_nowait(self._buffer.dropped_notice(self.app_guid, self.dropped))
            self.dropped = 0
        elif self._queue.qsize() >= self._bound:
            self.dropped += 1
            return
        self._queue.put_nowait(line)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    async def get(self, timeout: float | None = None) -> LogLine | None:  # noqa: ASYNC109
        """The next line; None when none came within `timeout` seconds. StreamEnded once the
        buffer stopped and every line before that was read."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if item is None:
            self._queue.put_nowait(None)  # every later get() ends too
            raise StreamEnded
        return item


class LogBuffer:
    """Recent lines per app (bounded, LRU over apps) and the live listeners."""

    def __init__(
        self,
        bus: Bus,
        clock: Clock,
        *,
        lines_per_app: int = DEFAULT_LINES_PER_APP,
        max_apps: int = DEFAULT_MAX_APPS,
        listener_queue: int = DEFAULT_LISTENER_QUEUE,
        keepalive_seconds: float = 15.0,
    ) -> None:
        if lines_per_app < 1 or max_apps < 1 or listener_queue < 2:
            raise ValueError("log buffer bounds must be positive (listener queue at least 2)")
        self.bus = bus
        self.clock = clock
        self.lines_per_app = lines_per_app
        self.max_apps = max_apps
        self.listener_queue = listener_queue
        # How often an idle live stream says it is still there (used by the API).
        self.keepalive_seconds = keepalive_seconds
        self._recent: OrderedDict[str, deque[LogLine]] = OrderedDict()
        self._listeners: dict[str, set[LogListener]] = {}
        self._subscription: Subscription | None = None
        self._stopped = False
        self.malformed = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to every app's lines. Idempotent."""
        if self._subscription is None and not self._stopped:
            self._subscription = await self.bus.subscribe(ALL_APP_LOGS, self._on_message)

    async def stop(self) -> None:
        """Unsubscribe and end every live stream. Idempotent."""
        self._stopped = True
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except BusError:
                log.warning("logs.unsubscribe_failed")
        self.end_streams()

    def end_streams(self) -> None:
        """End every live stream (a server about to stop lets its readers go first)."""
        for listeners in list(self._listeners.values()):
            for listener in list(listeners):
                listener.end()
        self._listeners.clear()

    # --- in ----------------------------------------------------------------------------------

    async def _on_message(self, message: Message) -> None:
        try:
            lines = parse_log_message(message.data)
        except BadMessage:
            self.malformed += 1
            log.warning("logs.malformed_line", subject=message.subject)
            return
        for line in lines:
            if message.subject != _subject_of(line.app_guid):
                self.malformed += 1
                log.warning("logs.subject_mismatch", subject=message.subject)
                continue
            self.add(line)

    def add(self, line: LogLine) -> None:
        """Keep a line and hand it to the app's live listeners."""
        if len(line.line) > MAX_LINE_CHARS:
            cut = line.line[: MAX_LINE_CHARS - len(TRUNCATED)] + TRUNCATED
            line = line.model_copy(update={"line": cut})
        lines = self._recent.get(line.app_guid)
        if lines is None:
            lines = self._recent[line.app_guid] = deque(maxlen=self.lines_per_app)
            while len(self._recent) > self.max_apps:
                self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(line.app_guid)
        lines.append(line)
        for listener in list(self._listeners.get(line.app_guid, ())):
            listener.offer(line)

    # --- out ---------------------------------------------------------------------------------

    def recent(self, app_guid: str, limit: int) -> list[LogLine]:
        """The last `limit` lines of an app, oldest first."""
        lines = self._recent.get(app_guid)
        if not lines or limit <= 0:
            return []
        return list(lines)[-limit:]

    @property
    def app_count(self) -> int:
        return len(self._recent)

    def listen(self, app_guid: str, *, recent: int = 0) -> LogListener:
        """A live listener that first reads the last `recent` lines: taken in the same step as
        registering, so nothing is missed or read twice in between."""
        listener = LogListener(self, app_guid, max(self.listener_queue, 2))
        listener.preload(self.recent(app_guid, recent))
        if self._stopped:
            listener.end()
        else:
            self._listeners.setdefault(app_guid, set()).add(listener)
        return listener

    def listener_count(self, app_guid: str | None = None) -> int:
        if app_guid is not None:
            return len(self._listeners.get(app_guid, ()))
        return sum(len(listeners) for listeners in self._listeners.values())

    def _forget(self, listener: LogListener) -> None:
        listeners = self._listeners.get(listener.app_guid)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self._listeners[listener.app_guid]

    def dropped_notice(self, app_guid: str, count: int) -> LogLine:
        noun = "line" if count == 1 else "lines"
        return LogLine(
            app_guid=app_guid,
            source=SOURCE_LOG_SYSTEM,
            stream="stderr",
            line=f"{count} log {noun} dropped: this reader fell behind",
            timestamp=unix_nanos(self.clock.now()),
        )

    async def publish(
        self,
        app_guid: str,
        source: str,
        line: str,
        *,
        stream: Literal["stdout", "stderr"] = "stdout",
        instance_guid: str | None = None,
    ) -> None:
        """Send a line of the controller's own (source `API`) on the bus. It reaches this
        buffer through the subscription like anyone else's. A bus failure is logged, not
        raised: a lost log line must not fail the change it describes."""
        message = LogLine(
            app_guid=app_guid,
            source=source,
            stream=stream,
            line=line,
            timestamp=unix_nanos(self.clock.now()),
            instance_guid=instance_guid,
        )
        try:
            await self.bus.publish(app_logs(app_guid), message.wire())
        except (BusError, ValueError) as error:
            log.warning("logs.publish_failed", error_type=type(error).__name__)


def can_read_logs(caller: Caller, space: Space) -> bool:
    """Admins, managers of the space's org, and the space's developers, managers and
    auditors."""
    permissions = caller.permissions
    if permissions.admin or permissions.can_manage_org(space.org_guid):
        return True
    return bool(permissions.space_roles(space.guid) & LOG_READER_SPACE_ROLES)


class Logs:
    """The use cases: who may read which app's lines."""

    def __init__(self, store: Store, buffer: LogBuffer) -> None:
        self.store = store
        self.buffer = buffer

    async def check_readable(self, caller: Caller, app_guid: str) -> None:
        """NotFound when the caller cannot see the app, NotAuthorized when they may not read
        its logs."""
        async with self.store.read() as tx:
            _, space = await visible_app(tx, caller, app_guid)
        if not can_read_logs(caller, space):
            raise forbid()

    async def recent(self, caller: Caller, app_guid: str, limit: int) -> list[LogLine]:
        await self.check_readable(caller, app_guid)
        return self.buffer.recent(app_guid, limit)

    async def listen(self, caller: Caller, app_guid: str, *, recent: int = 0) -> LogListener:
        """A live listener (close it when done), after the same checks as `recent`."""
        await self.check_readable(caller, app_guid)
        return self.buffer.listen(app_guid, recent=recent)
